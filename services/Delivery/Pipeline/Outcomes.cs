using Crm.BuildingBlocks.Data;
using System.Collections.Concurrent;
using Crm.BuildingBlocks.Outbox;
using Crm.Contracts.Delivery;
using Crm.Delivery.Channels;
using Crm.Delivery.Features.Messages;
using Crm.Delivery.Features.Webhooks;
using Dapper;
using Npgsql;

namespace Crm.Delivery.Pipeline;

/// <summary>
/// What happened to each message of a batch, written at the end in one transaction: the status and
/// reason on the message, a step on its timeline, and the batch's events in the outbox. A plain
/// "sent" step is not stored: the timeline reads it from the message's sent_at, as it reads
/// "accepted" from created_at.
/// </summary>
internal sealed class Outcomes(string tenant, TimeProvider clock, ChannelRegistry channels)
{
    private readonly ConcurrentDictionary<Guid, Outcome> _byMessage = new();

    private sealed record Outcome(MessageRow Message, string Status, string Reason, string? RuleId = null, DateTimeOffset? NotBefore = null,
        bool ReleaseCaps = false, bool Unreachable = false, SendOutcome? Sent = null, int? Segments = null, bool Attempted = false, bool IndexProviderId = false,
        string? NextChannel = null, DateTimeOffset? HoldUntil = null)
    {
        /// <summary>Stored and shown to the tenant (and published): a provider's error text is cut to a bounded length.</summary>
        public string Reason { get; init; } = ProviderText.Bound(Reason);
    }

    public string Tenant { get; } = tenant;

    /// <summary>The messages that moved to their next channel (written), to run through the pipeline again.</summary>
    public IReadOnlyList<Guid> FellBack { get; private set; } = [];

    public IReadOnlyList<MessageRow> ToRelease => _byMessage.Values.Where(o => o.ReleaseCaps).Select(o => o.Message).ToList();

    public void Suppress(MessageRow m, string reason, string? ruleId) => _byMessage[m.MessageId] = new(m, "suppressed", reason, ruleId);

    public void Defer(MessageRow m, DateTimeOffset until, string reason, string? ruleId, bool releaseCaps, bool attempted = false) =>
        _byMessage[m.MessageId] = new(m, "deferred", reason, ruleId, until, releaseCaps, Attempted: attempted);

    public void Fail(MessageRow m, string reason, bool unreachable, bool attempted = false) =>
        _byMessage[m.MessageId] = new(m, "failed", reason, ReleaseCaps: true, Unreachable: unreachable, Attempted: attempted);

    /// <summary>
    /// The message moves to the first channel of its fallback order: deferred until now with the reason on its timeline,
    /// its reservation on the channel it left given back, its provider account left to the new channel's default. Still
    /// one message: it is taken up again by the pipeline on the new channel.
    /// </summary>
    /// <param name="holdUntil">The worker keeps its claim until then, to take the message on at once (the deferred poller
    /// leaves it alone); a worker that stops lets it go to the poller when the claim runs out.</param>
    public void FallBack(MessageRow m, string reason, DateTimeOffset now, DateTimeOffset holdUntil) =>
        _byMessage[m.MessageId] = new(m, "deferred", reason, NotBefore: now, ReleaseCaps: true, Attempted: true, NextChannel: m.Fallback[0], HoldUntil: holdUntil);

    /// <summary>
    /// A message whose worker stopped after marking it sending: the provider may have it or not, and
    /// nobody can tell. It fails with the reason, is not sent again (a duplicate is worse than a report),
    /// and keeps its cap reservation, since it may have gone out.
    /// </summary>
    public void Unconfirmed(MessageRow m, string reason) => _byMessage[m.MessageId] = new(m, "failed", reason);

    /// <param name="receipts">The provider reports delivery by its message id, so the id is indexed for the receipt to find the message.</param>
    public void Sent(MessageRow m, SendOutcome outcome, int? segments, bool receipts) =>
        _byMessage[m.MessageId] = new(m, "sent",
            outcome.Kind == SendOutcomeKind.Unconfirmed ? $"unconfirmed: {outcome.Reason} (not retried, to avoid a duplicate)" : "",
            Sent: outcome, Segments: segments, Attempted: true, IndexProviderId: receipts);

    /// <summary>After an unexpected error: every message not decided yet is deferred (and its caps released).</summary>
    public void DeferUndecided(IEnumerable<MessageRow> batch, DateTimeOffset until, string reason)
    {
        foreach (var m in batch) _byMessage.TryAdd(m.MessageId, new Outcome(m, "deferred", reason, null, until, ReleaseCaps: true));
    }

    public async Task WriteAsync(TenantDb db, CancellationToken ct)
    {
        if (_byMessage.IsEmpty) return;
        var all = _byMessage.Values.ToList();
        var now = clock.GetUtcNow();
        await using var scope = await db.BeginAsync(Tenant, ct);
        var (conn, tx) = scope;
        // One statement: the outcome on each message, its timeline step and its provider id for receipts.
        // Only messages not decided elsewhere are touched: one cancelled while this batch ran keeps its
        // cancellation, and gets no step or event from here.
        var written = (await conn.QueryAsync<(Guid, bool)>("""
            WITH w AS (
                UPDATE messages m SET status = o.status, reason = o.reason, rule_id = o.rule_id, not_before = o.not_before,
                    sent_at = CASE WHEN o.status = 'sent' THEN @now END, provider_message_id = coalesce(o.provider_id, m.provider_message_id),
                    segments = coalesce(o.segments, m.segments),
                    attempts = m.attempts + CASE WHEN o.attempted THEN 1 ELSE 0 END,
                    cap_reserved_at = CASE WHEN o.release THEN NULL ELSE m.cap_reserved_at END,
                    claimed_until = o.hold_until, updated_at = @now,
                    channel = coalesce(o.next_channel, m.channel),
                    fallback = CASE WHEN o.next_channel IS NULL THEN m.fallback ELSE m.fallback[2:] END,
                    provider_account_id = CASE WHEN o.next_channel IS NULL THEN m.provider_account_id END
                FROM unnest(@ids, @statuses, @reasons, @ruleIds, @notBefores, @providerIds, @receiptIds, @segments, @releases, @attempted, @nextChannels, @holdUntils)
                    AS o(id, status, reason, rule_id, not_before, provider_id, receipt_id, segments, release, attempted, next_channel, hold_until)
                WHERE m.message_id = o.id AND m.tenant_id = @tenant AND m.status IN ('accepted', 'deferred', 'sending')
                RETURNING m.message_id, o.status, o.reason, o.receipt_id, o.next_channel),
            steps AS (
                INSERT INTO message_events (tenant_id, message_id, status, reason, at)
                SELECT @tenant, message_id, status, reason, @now FROM w WHERE NOT (status = 'sent' AND reason = '')),
            receipts AS (
                INSERT INTO message_provider_ids (tenant_id, provider_message_id, message_id)
                SELECT @tenant, receipt_id, message_id FROM w WHERE receipt_id IS NOT NULL
                ON CONFLICT DO NOTHING)
            SELECT message_id, next_channel IS NOT NULL FROM w
            """, new
        {
            tenant = Tenant,
            now = now.UtcDateTime,
            ids = all.Select(o => o.Message.MessageId).ToArray(),
            statuses = all.Select(o => o.Status).ToArray(),
            reasons = all.Select(o => o.Reason).ToArray(),
            ruleIds = all.Select(o => o.RuleId).ToArray(),
            notBefores = all.Select(o => o.NotBefore?.UtcDateTime).ToArray(),
            providerIds = all.Select(o => o.Sent?.ProviderMessageId).ToArray(),
            receiptIds = all.Select(o => o.IndexProviderId ? o.Sent?.ProviderMessageId : null).ToArray(),
            segments = all.Select(o => o.Segments).ToArray(),
            releases = all.Select(o => o.ReleaseCaps).ToArray(),
            attempted = all.Select(o => o.Attempted).ToArray(),
            nextChannels = all.Select(o => o.NextChannel).ToArray(),
            holdUntils = all.Select(o => o.HoldUntil?.UtcDateTime).ToArray(),
        }, tx)).ToList();
        FellBack = written.Where(w => w.Item2).Select(w => w.Item1).ToList();
        var writtenIds = written.Select(w => w.Item1).ToHashSet();
        all = all.Where(o => writtenIds.Contains(o.Message.MessageId)).ToList();

        var unreachable = all.Where(o => o.Unreachable).ToList();
        foreach (var channel in unreachable.GroupBy(o => o.Message.Channel))
        {
            // Stop at once here; Contacts is told below so the channel is marked for everyone.
            if (channels.Get(channel.Key).UnreachableFlag is not { } column) continue;
            await conn.ExecuteAsync($"UPDATE contact_channels SET {column} = true WHERE tenant_id = @tenant AND contact_id = ANY(@contacts)",
                new { tenant = Tenant, contacts = channel.Select(o => o.Message.ContactId).ToArray() }, tx);
        }

        // One event per kind for the whole batch (as TransactionsRecorded carries many orders): a
        // campaign of a million messages is ten thousand events on the bus, not a million.
        var sent = all.Where(o => o.Status == "sent").Select(o => new MessageSent(
            Tenant, o.Message.MessageId, o.Message.ContactId, o.Message.Channel, o.Message.CampaignId, o.Sent!.ProviderMessageId ?? "", o.Segments ?? 0, now)).ToList();
        var suppressed = all.Where(o => o.Status == "suppressed").Select(o => new MessageSuppressed(
            Tenant, o.Message.MessageId, o.Message.ContactId, o.Message.Channel, o.Message.CampaignId, o.Reason, o.RuleId, now)).ToList();
        var failed = all.Where(o => o.Status == "failed").Select(o => new MessageFailed(
            Tenant, o.Message.MessageId, o.Message.ContactId, o.Message.Channel, o.Message.CampaignId, o.Reason, now)).ToList();
        if (sent.Count > 0) await Outbox.EnqueueAsync(conn, tx, new MessagesSent(Tenant, sent));
        if (suppressed.Count > 0) await Outbox.EnqueueAsync(conn, tx, new MessagesSuppressed(Tenant, suppressed));
        if (failed.Count > 0) await Outbox.EnqueueAsync(conn, tx, new MessagesFailed(Tenant, failed));
        // The workspace's webhooks, in the same transaction as the outcomes they announce.
        await WebhookEvents.EnqueueAsync(conn, tx, Tenant,
            [.. sent.Select(WebhookEvents.Of), .. suppressed.Select(WebhookEvents.Of), .. failed.Select(WebhookEvents.Of)], now);
        await Outbox.EnqueueManyAsync(conn, tx, unreachable.Select(o => new ChannelUnreachable(Tenant, o.Message.ContactId, o.Message.Channel, o.Reason, now)));
        await tx.CommitAsync(ct);
    }
}
