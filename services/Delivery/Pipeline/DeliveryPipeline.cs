using System.Globalization;
using Crm.BuildingBlocks.Outbox;
using Crm.Contracts.Delivery;
using Crm.Delivery.Channels;
using Crm.Delivery.Channels.Sms;
using Crm.Delivery.Features.Messages;
using Crm.Delivery.Features.Policies;
using Dapper;
using Npgsql;

namespace Crm.Delivery.Pipeline;

/// <summary>
/// The path of every message: claim → consent → sending window → frequency caps → provider
/// throttle → advertising form → send. Each step that stops a message records why on the
/// message's timeline; nothing is dropped silently. A message is claimed with a short lease, so
/// a command delivered twice, or to two workers, is processed once.
/// </summary>
public sealed class DeliveryPipeline(
    NpgsqlDataSource db,
    TenantPolicies policies,
    FrequencyCaps caps,
    ProviderThrottle throttle,
    ISmsSender sms,
    IEmailSender email,
    DeliveryOptions options,
    TimeProvider clock,
    ILogger<DeliveryPipeline> logger)
{
    private static readonly NoopSender Noop = new();

    /// <summary>A worker holds a message for this long; a crashed worker's messages come back after it.</summary>
    public static readonly TimeSpan Lease = TimeSpan.FromMinutes(2);

    public async Task ProcessAsync(string tenant, Guid messageId, CancellationToken ct)
    {
        var message = await ClaimAsync(tenant, messageId, ct);
        if (message is null) return; // finished already, or another worker holds it
        await ProcessClaimedAsync(message, ct);
    }

    /// <summary>Runs a message this worker has claimed (its lease set) through the pipeline.</summary>
    public async Task ProcessClaimedAsync(MessageRow message, CancellationToken ct)
    {
        var messageId = message.MessageId;
        try
        {
            await RunAsync(message, ct);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            // Released to be retried later rather than lost.
            logger.LogError(ex, "Delivery of {MessageId} failed unexpectedly; deferring", messageId);
            await DeferAsync(message, clock.GetUtcNow().AddSeconds(30), $"internal error: {ex.GetType().Name}", null, releaseCaps: true, ct);
        }
    }

    private async Task RunAsync(MessageRow m, CancellationToken ct)
    {
        var now = clock.GetUtcNow();
        var policy = await policies.GetAsync(m.TenantId, ct);
        if (m.ExpiresAt is { } expires && expires <= now.UtcDateTime)
        {
            await SuppressAsync(m, "expired before it could be sent", null, ct);
            return;
        }

        // 1. Consent, from Delivery's projection of Contacts' events.
        var contact = await LoadContactAsync(m, ct);
        if (ConsentProblem(m, contact) is { } refusal)
        {
            await SuppressAsync(m, refusal, null, ct);
            return;
        }

        // 2. Sending window, in the contact's time zone (else the tenant's).
        var zone = Zone(contact!.TimeZone) ?? Zone(policy.Settings.TimeZone) ?? TimeZoneInfo.Utc;
        (TimeOnly, TimeOnly)? quiet = null;
        if (SendingWindow.TryParseWindow(m.QuietStart, m.QuietEnd, out var own)) quiet = own;
        else if (m.Purpose == "marketing" && policy.Settings.QuietEnabled && SendingWindow.TryParseWindow(policy.Settings.QuietStart, policy.Settings.QuietEnd, out var tenantQuiet))
            quiet = tenantQuiet;
        var nightRule = m.Purpose == "marketing" && !contact.Consents.Contains($"{m.Channel}:marketing_night");
        if (SendingWindow.NextAllowed(now, zone, quiet, nightRule) is { } window)
        {
            if (m.ExpiresAt is { } exp && exp <= window.At.UtcDateTime)
                await SuppressAsync(m, $"expires before the sending window opens ({window.Reason})", null, ct);
            else
                await DeferAsync(m, window.At, window.Reason, null, releaseCaps: false, ct);
            return;
        }

        // 3. Provider account (needed for the throttle and the send).
        var account = policy.Account(m.Channel, m.ProviderAccountId);
        if (account is null)
        {
            await FailAsync(m, $"no {m.Channel} provider account configured", permanent: true, unreachable: false, ct);
            return;
        }

        // 4. Frequency caps: all rules reserved atomically in Redis, then recorded in the ledger and confirmed.
        var rules = m.IgnoreCaps ? [] : policy.RulesFor(m.Channel, m.Purpose, m.Category);
        if (rules.Count > 0)
        {
            var check = new FrequencyCaps.Check(policy, m.ContactId, m.MessageId, rules, now);
            var decision = (await caps.ReserveAsync([check]))[0];
            if (decision.Allowed)
            {
                await SetReservationAsync(m, now, ct);
                decision = await caps.ConfirmAsync(check, decision);
                if (!decision.Allowed) await SetReservationAsync(m, null, ct);
            }
            if (!decision.Allowed)
            {
                var rule = decision.DeniedBy!;
                var reason = string.Create(CultureInfo.InvariantCulture, $"frequency cap {rule.RuleId}: {rule.Limit} per {Describe(rule.Window)}");
                if (m.OnCap == "defer") await DeferAsync(m, now + decision.RetryAfter, reason, rule.RuleId, releaseCaps: false, ct);
                else await SuppressAsync(m, reason, rule.RuleId, ct);
                return;
            }
        }

        // 5. Provider throttle: short waits are waited out, long ones defer.
        while (true)
        {
            var wait = await throttle.TryAcquireAsync(m.TenantId, account.AccountId, account.MessagesPerSecond, clock.GetUtcNow());
            if (wait == TimeSpan.Zero) break;
            if (wait > options.MaxInlineThrottleWait)
            {
                await DeferAsync(m, clock.GetUtcNow() + wait, $"provider {account.AccountId} rate of {account.MessagesPerSecond}/s", null, releaseCaps: true, ct);
                return;
            }
            await Task.Delay(wait, clock, ct);
        }

        // 6. What goes out: Korean advertising form for marketing SMS, one-click unsubscribe for marketing email.
        var config = policies.Config(m.TenantId, account);
        SendOutcome outcome;
        int? segments = null;
        if (m.Channel == "sms")
        {
            var body = m.TextBody ?? "";
            if (m.Purpose == "marketing")
            {
                if (policy.Settings.SenderName.Length == 0 || policy.Settings.OptOutNumber.Length == 0)
                {
                    await FailAsync(m, "marketing SMS needs the sender name and free opt-out number (SetSenderProfile)", permanent: true, unreachable: false, ct);
                    return;
                }
                body = AdvertisingForm.KoreanSmsAd(body, policy.Settings.SenderName, policy.Settings.OptOutNumber);
            }
            segments = SmsSegments.Count(body).Segments;
            await MarkSendingAsync(m, ct);
            outcome = await (account.Kind == NoopSender.Kind ? Noop : sms).SendAsync(config, new OutgoingSms(contact.Phone!, body), ct);
        }
        else
        {
            var headers = new Dictionary<string, string>();
            if (m.Purpose == "marketing")
            {
                var url = policy.Settings.UnsubscribeUrl.Replace("{message_id}", m.MessageId.ToString("N"), StringComparison.Ordinal);
                var mailto = policy.Settings.UnsubscribeMailto;
                if (url.Length == 0 && mailto.Length == 0)
                {
                    await FailAsync(m, "marketing email needs an unsubscribe URL or address (SetSenderProfile)", permanent: true, unreachable: false, ct);
                    return;
                }
                foreach (var (k, v) in AdvertisingForm.UnsubscribeHeaders(url.Length > 0 ? url : null, mailto.Length > 0 ? mailto : null)) headers[k] = v;
            }
            await MarkSendingAsync(m, ct);
            outcome = await (account.Kind == NoopSender.Kind ? Noop : email)
                .SendAsync(config, new OutgoingEmail(contact.Email!, null, m.Subject ?? "", m.TextBody, m.HtmlBody, headers), ct);
        }

        // 7. Record what happened.
        switch (outcome.Kind)
        {
            case SendOutcomeKind.Sent:
            case SendOutcomeKind.Unconfirmed:
                await SentAsync(m, outcome, segments, ct);
                break;
            case SendOutcomeKind.Permanent:
                await FailAsync(m, outcome.Reason, permanent: true, outcome.RecipientUnreachable, ct);
                break;
            default:
                if (m.Attempts + 1 >= options.MaxAttempts)
                    await FailAsync(m, $"gave up after {m.Attempts + 1} attempts: {outcome.Reason}", permanent: false, unreachable: false, ct);
                else
                    await DeferAsync(m, clock.GetUtcNow() + (outcome.RetryAfter ?? TimeSpan.FromSeconds(Math.Pow(2, m.Attempts + 1))),
                        $"provider: {outcome.Reason}", null, releaseCaps: true, ct);
                break;
        }
    }

    private async Task<MessageRow?> ClaimAsync(string tenant, Guid messageId, CancellationToken ct)
    {
        var now = clock.GetUtcNow().UtcDateTime;
        await using var conn = await db.OpenConnectionAsync(ct);
        return await conn.QuerySingleOrDefaultAsync<MessageRow>($"""
            UPDATE messages SET claimed_until = @until
            WHERE tenant_id = @tenant AND message_id = @messageId AND status IN ('accepted', 'deferred')
              AND (not_before IS NULL OR not_before <= @now) AND (claimed_until IS NULL OR claimed_until < @now)
            RETURNING {MessageRow.Columns}
            """, new { tenant, messageId, now, until = now + Lease });
    }

    private sealed record ContactState(string? Email, string? Phone, string? TimeZone, bool Suppressed, bool Erased,
        bool SmsUnreachable, bool EmailUnreachable, HashSet<string> Consents, HashSet<string> OptOuts);

    private async Task<ContactState?> LoadContactAsync(MessageRow m, CancellationToken ct)
    {
        await using var conn = await db.OpenConnectionAsync(ct);
        using var grid = await conn.QueryMultipleAsync(new CommandDefinition("""
            SELECT email, phone, time_zone, suppressed, erased, sms_unreachable, email_unreachable
            FROM contact_channels WHERE tenant_id = @TenantId AND contact_id = @ContactId;
            SELECT channel || ':' || purpose AS key, status FROM contact_consents WHERE tenant_id = @TenantId AND contact_id = @ContactId;
            """, new { m.TenantId, m.ContactId }, cancellationToken: ct));
        var row = await grid.ReadSingleOrDefaultAsync<(string? Email, string? Phone, string? TimeZone, bool Suppressed, bool Erased, bool SmsUnreachable, bool EmailUnreachable)?>();
        var consents = (await grid.ReadAsync<(string Key, string Status)>()).ToList();
        if (row is not { } r) return null;
        return new ContactState(r.Email, r.Phone, r.TimeZone, r.Suppressed, r.Erased, r.SmsUnreachable, r.EmailUnreachable,
            consents.Where(c => c.Status == "opted_in").Select(c => c.Key).ToHashSet(),
            consents.Where(c => c.Status == "opted_out").Select(c => c.Key).ToHashSet());
    }

    /// <summary>Marketing needs an opt-in on the channel; transactional needs the channel not opted out; erased contacts get nothing.</summary>
    private static string? ConsentProblem(MessageRow m, ContactState? c)
    {
        if (c is null) return "contact unknown to delivery (no profile received from Contacts)";
        if (c.Erased) return "contact erased";
        if (c.Suppressed) return "contact suppressed (matches an erased identity)";
        if (m.Channel == "sms" && string.IsNullOrEmpty(c.Phone)) return "contact has no phone number";
        if (m.Channel == "email" && string.IsNullOrEmpty(c.Email)) return "contact has no email address";
        if (m.Channel == "sms" && c.SmsUnreachable) return "sms unreachable (reported by the provider)";
        if (m.Channel == "email" && c.EmailUnreachable) return "email unreachable (reported by the provider)";
        if (m.Purpose == "marketing" && !c.Consents.Contains($"{m.Channel}:marketing")) return $"consent: no marketing opt-in on {m.Channel}";
        if (m.Purpose == "transactional" && c.OptOuts.Contains($"{m.Channel}:transactional")) return $"consent: opted out of transactional {m.Channel}";
        return null;
    }

    private async Task SetReservationAsync(MessageRow m, DateTimeOffset? at, CancellationToken ct)
    {
        await using var conn = await db.OpenConnectionAsync(ct);
        await conn.ExecuteAsync("UPDATE messages SET cap_reserved_at = @at WHERE tenant_id = @TenantId AND message_id = @MessageId",
            new { at = at?.UtcDateTime, m.TenantId, m.MessageId });
    }

    /// <summary>The attempt is recorded before the provider is called: a crash or timeout after it never sends twice.</summary>
    private async Task MarkSendingAsync(MessageRow m, CancellationToken ct)
    {
        await using var conn = await db.OpenConnectionAsync(ct);
        var now = clock.GetUtcNow().UtcDateTime;
        await conn.ExecuteAsync("""
            UPDATE messages SET status = 'sending', attempts = attempts + 1, updated_at = @now
            WHERE tenant_id = @TenantId AND message_id = @MessageId;
            INSERT INTO message_events (tenant_id, message_id, status, reason, at) VALUES (@TenantId, @MessageId, 'sending', '', @now);
            """, new { now, m.TenantId, m.MessageId });
    }

    private async Task SentAsync(MessageRow m, SendOutcome outcome, int? segments, CancellationToken ct)
    {
        var now = clock.GetUtcNow();
        var reason = outcome.Kind == SendOutcomeKind.Unconfirmed ? $"unconfirmed: {outcome.Reason} (not retried, to avoid a duplicate)" : "";
        await using var conn = await db.OpenConnectionAsync(ct);
        await using var tx = await conn.BeginTransactionAsync(ct);
        await conn.ExecuteAsync("""
            UPDATE messages SET status = 'sent', reason = @reason, sent_at = @now, provider_message_id = @id, segments = @segments,
                claimed_until = NULL, updated_at = @now
            WHERE tenant_id = @TenantId AND message_id = @MessageId;
            INSERT INTO message_events (tenant_id, message_id, status, reason, at) VALUES (@TenantId, @MessageId, 'sent', @reason, @now);
            """, new { reason, now = now.UtcDateTime, id = outcome.ProviderMessageId, segments, m.TenantId, m.MessageId }, tx);
        await Outbox.EnqueueAsync(conn, tx, new MessageSent(m.TenantId, m.MessageId, m.ContactId, m.Channel, m.CampaignId,
            outcome.ProviderMessageId ?? "", segments ?? 0, now));
        await tx.CommitAsync(ct);
    }

    private async Task SuppressAsync(MessageRow m, string reason, string? ruleId, CancellationToken ct)
    {
        var now = clock.GetUtcNow();
        await using var conn = await db.OpenConnectionAsync(ct);
        await using var tx = await conn.BeginTransactionAsync(ct);
        await conn.ExecuteAsync("""
            UPDATE messages SET status = 'suppressed', reason = @reason, rule_id = @ruleId, claimed_until = NULL, updated_at = @now
            WHERE tenant_id = @TenantId AND message_id = @MessageId;
            INSERT INTO message_events (tenant_id, message_id, status, reason, at) VALUES (@TenantId, @MessageId, 'suppressed', @reason, @now);
            """, new { reason, ruleId, now = now.UtcDateTime, m.TenantId, m.MessageId }, tx);
        await Outbox.EnqueueAsync(conn, tx, new MessageSuppressed(m.TenantId, m.MessageId, m.ContactId, m.Channel, m.CampaignId, reason, ruleId, now));
        await tx.CommitAsync(ct);
    }

    private async Task DeferAsync(MessageRow m, DateTimeOffset until, string reason, string? ruleId, bool releaseCaps, CancellationToken ct)
    {
        if (releaseCaps && !m.IgnoreCaps)
        {
            var policy = await policies.GetAsync(m.TenantId, ct);
            await caps.ReleaseAsync(policy, m.ContactId, m.MessageId, policy.RulesFor(m.Channel, m.Purpose, m.Category));
        }
        var now = clock.GetUtcNow().UtcDateTime;
        await using var conn = await db.OpenConnectionAsync(ct);
        await conn.ExecuteAsync("""
            UPDATE messages SET status = 'deferred', reason = @reason, rule_id = @ruleId, not_before = @until, claimed_until = NULL,
                cap_reserved_at = CASE WHEN @releaseCaps THEN NULL ELSE cap_reserved_at END, updated_at = @now
            WHERE tenant_id = @TenantId AND message_id = @MessageId;
            INSERT INTO message_events (tenant_id, message_id, status, reason, at) VALUES (@TenantId, @MessageId, 'deferred', @reason, @now);
            """, new { reason, ruleId, until = until.UtcDateTime, releaseCaps, now, m.TenantId, m.MessageId });
    }

    private async Task FailAsync(MessageRow m, string reason, bool permanent, bool unreachable, CancellationToken ct)
    {
        var policy = await policies.GetAsync(m.TenantId, ct);
        if (!m.IgnoreCaps) await caps.ReleaseAsync(policy, m.ContactId, m.MessageId, policy.RulesFor(m.Channel, m.Purpose, m.Category));
        var now = clock.GetUtcNow();
        await using var conn = await db.OpenConnectionAsync(ct);
        await using var tx = await conn.BeginTransactionAsync(ct);
        await conn.ExecuteAsync("""
            UPDATE messages SET status = 'failed', reason = @reason, cap_reserved_at = NULL, claimed_until = NULL, updated_at = @now
            WHERE tenant_id = @TenantId AND message_id = @MessageId;
            INSERT INTO message_events (tenant_id, message_id, status, reason, at) VALUES (@TenantId, @MessageId, 'failed', @reason, @now);
            """, new { reason, now = now.UtcDateTime, m.TenantId, m.MessageId }, tx);
        await Outbox.EnqueueAsync(conn, tx, new MessageFailed(m.TenantId, m.MessageId, m.ContactId, m.Channel, m.CampaignId, reason, now));
        if (unreachable)
        {
            // Stop at once here, and tell Contacts so the channel is marked for everyone.
            var column = m.Channel == "sms" ? "sms_unreachable" : "email_unreachable";
            await conn.ExecuteAsync($"UPDATE contact_channels SET {column} = true WHERE tenant_id = @TenantId AND contact_id = @ContactId",
                new { m.TenantId, m.ContactId }, tx);
            await Outbox.EnqueueAsync(conn, tx, new ChannelUnreachable(m.TenantId, m.ContactId, m.Channel, reason, now));
        }
        await tx.CommitAsync(ct);
        if (!permanent) logger.LogWarning("Message {MessageId} failed after retries: {Reason}", m.MessageId, reason);
    }

    private static TimeZoneInfo? Zone(string? id) => id is { Length: > 0 } && TimeZoneInfo.TryFindSystemTimeZoneById(id, out var z) ? z : null;

    private static string Describe(TimeSpan window) => window.TotalDays >= 1 && window.TotalDays % 1 == 0
        ? string.Create(CultureInfo.InvariantCulture, $"{window.TotalDays:0}d")
        : window.TotalHours >= 1 && window.TotalHours % 1 == 0
            ? string.Create(CultureInfo.InvariantCulture, $"{window.TotalHours:0}h")
            : string.Create(CultureInfo.InvariantCulture, $"{window.TotalMinutes:0}m");
}
