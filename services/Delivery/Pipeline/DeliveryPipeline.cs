using Crm.BuildingBlocks.Data;
using System.Collections.Concurrent;
using System.Globalization;
using Crm.Delivery.Channels;
using Crm.Delivery.Features.Messages;
using Crm.Delivery.Features.Policies;
using Dapper;
using Npgsql;

namespace Crm.Delivery.Pipeline;

/// <summary>
/// The path of every message: claim → consent → sending window → frequency caps → provider
/// throttle → advertising form → send. Each step that stops a message records why on the
/// message's timeline; nothing is dropped silently. Messages are claimed with a short lease, so a
/// command delivered twice, or to two workers, is processed once.
///
/// Messages travel in batches (a DeliverMessage command, a page of deferred messages): each step
/// is one database statement or one pipelined Redis round trip for the whole batch, and the
/// outcomes are written in one transaction at the end.
/// </summary>
public sealed class DeliveryPipeline(
    TenantDb db,
    TenantPolicies policies,
    FrequencyCaps caps,
    ProviderThrottle throttle,
    ChannelRegistry channels,
    DeliveryOptions options,
    TimeProvider clock,
    ILogger<DeliveryPipeline> logger)
{
    /// <summary>A worker holds a message for this long; a stopped worker's messages are taken up after it (StrandedMessages).</summary>
    public TimeSpan Lease => options.ClaimLease;

    /// <summary>Claims the messages that are due and not held elsewhere, and runs them through the pipeline.</summary>
    public async Task ProcessAsync(string tenant, IReadOnlyList<Guid> messageIds, CancellationToken ct)
    {
        var now = clock.GetUtcNow().UtcDateTime;
        List<MessageRow> claimed;
        await using (var scope = await db.BeginAsync(tenant, ct))
        {
            claimed = (await scope.Connection.QueryAsync<MessageRow>($"""
                UPDATE messages SET claimed_until = @until
                WHERE message_id = ANY(@messageIds) AND tenant_id = @tenant AND status IN ('accepted', 'deferred')
                  AND (not_before IS NULL OR not_before <= @now) AND (claimed_until IS NULL OR claimed_until < @now)
                RETURNING {MessageRow.Columns}
                """, new { tenant, messageIds = messageIds.ToArray(), now, until = now + Lease })).AsList();
            await scope.CommitAsync(ct);
        }
        await ProcessClaimedAsync(claimed);
    }

    /// <summary>
    /// Runs messages this worker has claimed (their lease set) through the pipeline, to the end: not cancelled
    /// by whoever asked (a RabbitMQ channel that closed, a gRPC caller that left, the host stopping). A batch
    /// given up half-way leaves messages marked sending, which can then only be reported unconfirmed; every
    /// step is bounded (provider timeouts, retry limits, throttle waits), so finishing is soon.
    /// </summary>
    public async Task ProcessClaimedAsync(IReadOnlyList<MessageRow> claimed)
    {
        var ct = CancellationToken.None;
        foreach (var tenantBatch in claimed.GroupBy(m => m.TenantId))
        {
            var outcomes = new Outcomes(tenantBatch.Key, clock, channels);
            try
            {
                await RunAsync(tenantBatch.Key, tenantBatch.ToList(), outcomes, ct);
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                // Released to be retried later rather than lost.
                logger.LogError(ex, "Delivery of a batch of {Count} failed unexpectedly; deferring", tenantBatch.Count());
                outcomes.DeferUndecided(tenantBatch, clock.GetUtcNow().AddSeconds(30), $"internal error: {ex.GetType().Name}");
            }
            await ReleaseCapsAsync(outcomes, ct);
            await outcomes.WriteAsync(db, ct);
            // Messages moved to their next channel go on now, still claimed by this worker.
            if (outcomes.FellBack is { Count: > 0 } moved) await ProcessClaimedAsync(await HeldAsync(tenantBatch.Key, moved, ct));
        }
    }

    private async Task RunAsync(string tenant, List<MessageRow> batch, Outcomes outcomes, CancellationToken ct)
    {
        var now = clock.GetUtcNow();
        var policy = await policies.GetAsync(tenant, ct);
        var contacts = await LoadContactsAsync(tenant, batch.Select(m => m.ContactId).Distinct().ToArray(), ct);

        // 1–3: expiry, consent, sending window, provider account: decided in memory for the whole batch.
        var candidates = new List<Candidate>();
        foreach (var m in batch)
        {
            contacts.TryGetValue(m.ContactId, out var contact);
            if (m.ExpiresAt is { } expires && expires <= now.UtcDateTime)
            {
                outcomes.Suppress(m, "expired before it could be sent", null);
                continue;
            }
            if (ConsentProblem(m, contact) is { } refusal)
            {
                outcomes.Suppress(m, refusal, null);
                continue;
            }
            var zone = Zone(contact!.TimeZone) ?? Zone(policy.Settings.TimeZone) ?? TimeZoneInfo.Utc;
            (TimeOnly, TimeOnly)? quiet = null;
            if (SendingWindow.TryParseWindow(m.QuietStart, m.QuietEnd, out var own)) quiet = own;
            else if (m.Purpose == "marketing" && policy.Settings.QuietEnabled && SendingWindow.TryParseWindow(policy.Settings.QuietStart, policy.Settings.QuietEnd, out var tenantQuiet))
                quiet = tenantQuiet;
            // Korea's night-time rule binds a Korean workspace's advertising only.
            var nightRule = policy.Settings.KoreanAdvertisingRules && m.Purpose == "marketing" && !contact.Consents.Contains($"{m.Channel}:marketing_night");
            if (SendingWindow.NextAllowed(now, zone, quiet, nightRule) is { } window)
            {
                if (m.ExpiresAt is { } exp && exp <= window.At.UtcDateTime)
                    outcomes.Suppress(m, $"expires before the sending window opens ({window.Reason})", null);
                else
                    outcomes.Defer(m, window.At, window.Reason, null, releaseCaps: false);
                continue;
            }
            var account = policy.Account(m.Channel, m.ProviderAccountId);
            if (account is null)
            {
                outcomes.Fail(m, $"no {m.Channel} provider account configured", unreachable: false);
                continue;
            }
            candidates.Add(new Candidate(m, contact, account, m.IgnoreCaps ? [] : policy.RulesFor(m.Channel, m.Purpose, m.Category)));
        }

        // 4. Frequency caps: all rules of a message reserved atomically, the batch in one pipelined round trip,
        // then recorded in the ledger and confirmed against the sets' generations.
        var capped = candidates.Where(c => c.Rules.Count > 0).ToList();
        HashSet<Guid> marked;
        if (capped.Count > 0)
        {
            var checks = capped.Select(c => new FrequencyCaps.Check(policy, c.Message.ContactId, c.Message.MessageId, c.Rules, now)).ToList();
            var decisions = (await caps.ReserveAsync(checks)).ToList();
            var reserved = Enumerable.Range(0, checks.Count).Where(i => decisions[i].Allowed).ToList();
            // One update: the reservations into the ledger, and every message still going marked as sending
            // (from here on, a crash never sends it twice).
            marked = await MarkSendingAsync(tenant, candidates.Where(c => c.Rules.Count == 0).Concat(reserved.Select(i => capped[i])).Select(c => c.Message.MessageId).ToArray(),
                reserved.Select(i => capped[i].Message.MessageId).ToArray(), now, ct);
            // A message no longer waiting (cancelled, or taken over after this worker's lease ran out) is not ours to
            // send: its reservation is given back and it leaves the batch without an outcome from here.
            foreach (var i in reserved.Where(i => !marked.Contains(capped[i].Message.MessageId)).ToList())
            {
                await caps.ReleaseAsync(policy, capped[i].Message.ContactId, capped[i].Message.MessageId, capped[i].Rules);
                reserved.Remove(i);
            }
            var confirmed = await Task.WhenAll(reserved.Select(i => caps.ConfirmAsync(checks[i], decisions[i])));
            for (var k = 0; k < reserved.Count; k++) decisions[reserved[k]] = confirmed[k];
            var lost = reserved.Where(i => !decisions[i].Allowed).Select(i => capped[i].Message.MessageId).ToArray();
            if (lost.Length > 0) await ClearReservationsAsync(tenant, lost, ct);
            for (var i = 0; i < capped.Count; i++)
            {
                if (decisions[i].Allowed) continue;
                var m = capped[i].Message;
                var rule = decisions[i].DeniedBy!;
                var reason = string.Create(CultureInfo.InvariantCulture, $"frequency cap {rule.RuleId}: {rule.Limit} per {Describe(rule.Window)}");
                if (m.OnCap == "defer") outcomes.Defer(m, now + decisions[i].RetryAfter, reason, rule.RuleId, releaseCaps: false);
                else outcomes.Suppress(m, reason, rule.RuleId);
                candidates.Remove(capped[i]);
            }
        }
        else
        {
            marked = await MarkSendingAsync(tenant, candidates.Select(c => c.Message.MessageId).ToArray(), [], now, ct);
        }
        // Only the messages marked go on (see MarkSendingAsync).
        candidates.RemoveAll(c => !marked.Contains(c.Message.MessageId));
        if (candidates.Count == 0) return;

        // 5. Provider throttle: each account's messages get their slots in one round trip; those whose slot
        // would be further away than a short wait are deferred until one comes free.
        var slotted = new List<(Candidate Candidate, TimeSpan Wait)>();
        foreach (var byAccount in candidates.GroupBy(c => c.Account.AccountId))
        {
            var account = byAccount.First().Account;
            var (waits, retryAfter) = await throttle.ReserveSlotsAsync(tenant, account.AccountId, account.MessagesPerSecond, byAccount.Count(),
                options.MaxInlineThrottleWait, now);
            var k = 0;
            foreach (var c in byAccount)
            {
                if (k < waits.Count) slotted.Add((c, waits[k++]));
                else outcomes.Defer(c.Message, now + retryAfter, $"provider {account.AccountId} rate of {account.MessagesPerSecond}/s", null, releaseCaps: true);
            }
        }
        if (slotted.Count == 0) return;

        // 6–7. Advertising form and send, concurrently (each already recorded as sending). Each
        // account's settings and secret are opened once per batch, not once per message.
        var configs = slotted.Select(s => s.Candidate.Account).DistinctBy(a => a.AccountId)
            .ToDictionary(a => a.AccountId, a => channels.Get(a.Channel).Configure(tenant, policies.Config(tenant, a)), StringComparer.Ordinal);
        await Parallel.ForEachAsync(slotted, new ParallelOptions { MaxDegreeOfParallelism = options.Concurrency, CancellationToken = ct },
            async (s, token) =>
            {
                // The slot is a time (counted from when it was granted), not a delay from now.
                var wait = now + s.Wait - clock.GetUtcNow();
                if (wait > TimeSpan.Zero) await Task.Delay(wait, clock, token);
                await SendAsync(policy, s.Candidate, configs[s.Candidate.Account.AccountId], outcomes, token);
            });
    }

    private async Task SendAsync(TenantPolicy policy, Candidate c, ProviderAccountConfig config, Outcomes outcomes, CancellationToken ct)
    {
        var (m, contact, account, _) = c;
        for (var pace = await throttle.PaceAsync(m.TenantId, account.AccountId, account.MessagesPerSecond, clock.GetUtcNow());
             pace > TimeSpan.Zero;
             pace = await throttle.PaceAsync(m.TenantId, account.AccountId, account.MessagesPerSecond, clock.GetUtcNow()))
            await Task.Delay(pace, clock, ct);
        try
        {
            await SendPacedAsync(policy, c, config, outcomes, ct);
        }
        finally
        {
            await throttle.AnsweredAsync(m.TenantId, account.AccountId, account.MessagesPerSecond, clock.GetUtcNow());
        }
    }

    private async Task SendPacedAsync(TenantPolicy policy, Candidate c, ProviderAccountConfig config, Outcomes outcomes, CancellationToken ct)
    {
        var (m, contact, account, _) = c;

        var channel = channels.Get(m.Channel);
        var (outcome, segments, attempted, fallBack) = await channel.SendAsync(new ChannelSend(m, contact, policy.Settings, config), ct);
        if (!attempted)
        {
            outcomes.Fail(m, outcome.Reason, unreachable: false);
            return;
        }
        if (fallBack && m.Fallback.Length > 0)
        {
            // The same message goes on on the next channel, through the whole pipeline again (consent, window, caps).
            var at = clock.GetUtcNow();
            outcomes.FallBack(m, $"{channel.Name}: {outcome.Reason}; continuing on {m.Fallback[0]}", at, at + Lease);
            return;
        }

        switch (outcome.Kind)
        {
            case SendOutcomeKind.Sent:
            case SendOutcomeKind.Unconfirmed:
                outcomes.Sent(m, outcome, segments, channels.SendsReceipts(config.Kind));
                break;
            case SendOutcomeKind.Permanent:
                outcomes.Fail(m, outcome.Reason, outcome.RecipientUnreachable, attempted: true);
                break;
            default:
                if (m.Attempts + 1 >= options.MaxAttempts)
                    outcomes.Fail(m, $"gave up after {m.Attempts + 1} attempts: {outcome.Reason}", unreachable: false, attempted: true);
                else
                    outcomes.Defer(m, clock.GetUtcNow() + (outcome.RetryAfter ?? TimeSpan.FromSeconds(Math.Pow(2, m.Attempts + 1))),
                        $"provider: {outcome.Reason}", null, releaseCaps: true, attempted: true);
                break;
        }
    }

    private sealed record Candidate(MessageRow Message, DeliveryContact Contact, ProviderAccountRow Account, IReadOnlyList<CapRule> Rules);

    private async Task<Dictionary<Guid, DeliveryContact>> LoadContactsAsync(string tenant, Guid[] contactIds, CancellationToken ct)
    {
        await using var scope = await db.BeginAsync(tenant, ct);
        var conn = scope.Connection;
        using var grid = await conn.QueryMultipleAsync(new CommandDefinition("""
            SELECT contact_id, email, phone, time_zone, suppressed, erased, sms_unreachable, email_unreachable
            FROM contact_channels WHERE tenant_id = @tenant AND contact_id = ANY(@contactIds);
            SELECT contact_id, channel || ':' || purpose AS key, status FROM contact_consents WHERE tenant_id = @tenant AND contact_id = ANY(@contactIds);
            """, new { tenant, contactIds }, cancellationToken: ct));
        var rows = (await grid.ReadAsync<(Guid ContactId, string? Email, string? Phone, string? TimeZone, bool Suppressed, bool Erased, bool SmsUnreachable, bool EmailUnreachable)>()).ToList();
        var consents = (await grid.ReadAsync<(Guid ContactId, string Key, string Status)>()).ToLookup(c => c.ContactId);
        return rows.ToDictionary(r => r.ContactId, r => new DeliveryContact(r.Email, r.Phone, r.TimeZone, r.Suppressed, r.Erased,
            r.SmsUnreachable, r.EmailUnreachable,
            consents[r.ContactId].Where(c => c.Status == "opted_in").Select(c => c.Key).ToHashSet(),
            consents[r.ContactId].Where(c => c.Status == "opted_out").Select(c => c.Key).ToHashSet()));
    }

    /// <summary>Marketing needs an opt-in on the channel; transactional needs the channel not opted out; erased contacts get nothing.</summary>
    private string? ConsentProblem(MessageRow m, DeliveryContact? c)
    {
        if (c is null) return "contact unknown to delivery (no profile received from Contacts)";
        if (c.Erased) return "contact erased";
        if (c.Suppressed) return "contact suppressed (matches an erased identity)";
        if (channels.Get(m.Channel).AddressProblem(c) is { } problem) return problem;
        if (m.Purpose == "marketing" && !c.Consents.Contains($"{m.Channel}:marketing")) return $"consent: no marketing opt-in on {m.Channel}";
        if (m.Purpose == "transactional" && c.OptOuts.Contains($"{m.Channel}:transactional")) return $"consent: opted out of transactional {m.Channel}";
        return null;
    }

    /// <summary>
    /// Marks messages as sending (before any provider is called: a crash or timeout after it never
    /// sends twice) and records their cap reservations in the ledger, in one statement.
    /// </summary>
    /// <returns>The messages marked: those still waiting. A message cancelled meanwhile, or claimed by another
    /// worker after this one's lease ran out, is left as it is.</returns>
    private async Task<HashSet<Guid>> MarkSendingAsync(string tenant, Guid[] sending, Guid[] reserved, DateTimeOffset now, CancellationToken ct)
    {
        if (sending.Length == 0) return [];
        await using var scope = await db.BeginAsync(tenant, ct);
        var marked = (await scope.Connection.QueryAsync<Guid>("""
            UPDATE messages SET status = 'sending', updated_at = @now,
                cap_reserved_at = CASE WHEN message_id = ANY(@reserved) THEN @now ELSE cap_reserved_at END
            WHERE message_id = ANY(@sending) AND tenant_id = @tenant AND status IN ('accepted', 'deferred')
            RETURNING message_id
            """, new { now = now.UtcDateTime, tenant, sending, reserved })).ToHashSet();
        // Committed before any provider is called.
        await scope.CommitAsync(ct);
        return marked;
    }

    private async Task ClearReservationsAsync(string tenant, Guid[] messageIds, CancellationToken ct)
    {
        await using var scope = await db.BeginAsync(tenant, ct);
        await scope.Connection.ExecuteAsync("UPDATE messages SET cap_reserved_at = NULL WHERE message_id = ANY(@messageIds) AND tenant_id = @tenant",
            new { tenant, messageIds });
        await scope.CommitAsync(ct);
    }

    private async Task<List<MessageRow>> HeldAsync(string tenant, IReadOnlyList<Guid> messageIds, CancellationToken ct)
    {
        await using var scope = await db.BeginAsync(tenant, ct);
        return (await scope.Connection.QueryAsync<MessageRow>(
            $"SELECT {MessageRow.Columns} FROM messages WHERE message_id = ANY(@ids) AND tenant_id = @tenant AND status = 'deferred'",
            new { tenant, ids = messageIds.ToArray() })).AsList();
    }

    /// <summary>Suppresses messages this worker holds (claimed or scheduled) before they reach any step, recording why.</summary>
    public async Task SuppressAsync(string tenant, IEnumerable<MessageRow> messages, string reason, CancellationToken ct)
    {
        var outcomes = new Outcomes(tenant, clock, channels);
        foreach (var m in messages) outcomes.Suppress(m, reason, null);
        await outcomes.WriteAsync(db, ct);
    }

    /// <summary>Reservations of messages that did not go out are given back to the caps.</summary>
    private async Task ReleaseCapsAsync(Outcomes outcomes, CancellationToken ct)
    {
        var release = outcomes.ToRelease;
        if (release.Count == 0) return;
        var policy = await policies.GetAsync(outcomes.Tenant, ct);
        await Task.WhenAll(release.Where(m => !m.IgnoreCaps)
            .Select(m => caps.ReleaseAsync(policy, m.ContactId, m.MessageId, policy.RulesFor(m.Channel, m.Purpose, m.Category))));
    }

    private static TimeZoneInfo? Zone(string? id) => id is { Length: > 0 } && TimeZoneInfo.TryFindSystemTimeZoneById(id, out var z) ? z : null;

    private static string Describe(TimeSpan window) => window.TotalDays >= 1 && window.TotalDays % 1 == 0
        ? string.Create(CultureInfo.InvariantCulture, $"{window.TotalDays:0}d")
        : window.TotalHours >= 1 && window.TotalHours % 1 == 0
            ? string.Create(CultureInfo.InvariantCulture, $"{window.TotalHours:0}h")
            : string.Create(CultureInfo.InvariantCulture, $"{window.TotalMinutes:0}m");
}
