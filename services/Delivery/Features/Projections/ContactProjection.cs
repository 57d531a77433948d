using Crm.BuildingBlocks.Data;
using Crm.BuildingBlocks.Outbox;
using Crm.Contracts.Contacts;
using Crm.Contracts.Delivery;
using Crm.Delivery.Features.Policies;
using Crm.Delivery.Pipeline;
using Dapper;
using MassTransit;
using Npgsql;

namespace Crm.Delivery.Features.Projections;

// Delivery's own copy of what it needs from Contacts: addresses, time zone, suppression and consent.
// Events are applied last-writer-wins by their OccurredAt, so a redelivered or reordered event
// changes nothing (no inbox table needed).

public sealed class ContactUpsertedConsumer(TenantDb db) : IConsumer<ContactUpserted>
{
    public async Task Consume(ConsumeContext<ContactUpserted> context)
    {
        var e = context.Message;
        await using var scope = await db.BeginAsync(e.TenantId, context.CancellationToken);
        var conn = scope.Connection;
        await conn.ExecuteAsync("""
            INSERT INTO contact_channels (tenant_id, contact_id, email, phone, time_zone, locale, suppressed, version_at)
            VALUES (@TenantId, @ContactId, @Email, @Phone, @TimeZone, @Locale, @Suppressed, @OccurredAt)
            ON CONFLICT (tenant_id, contact_id) DO UPDATE SET
                email = excluded.email, phone = excluded.phone, time_zone = excluded.time_zone, locale = excluded.locale,
                suppressed = excluded.suppressed, version_at = excluded.version_at,
                -- a new address is worth trying again
                sms_unreachable = contact_channels.sms_unreachable AND contact_channels.phone IS NOT DISTINCT FROM excluded.phone,
                email_unreachable = contact_channels.email_unreachable AND contact_channels.email IS NOT DISTINCT FROM excluded.email
            WHERE contact_channels.version_at <= excluded.version_at AND NOT contact_channels.erased
            """, new { e.TenantId, e.ContactId, e.Email, e.Phone, e.TimeZone, e.Locale, e.Suppressed, e.OccurredAt });
        await scope.CommitAsync(context.CancellationToken);
    }
}

public sealed class ConsentChangedConsumer(TenantDb db) : IConsumer<ConsentChanged>
{
    public async Task Consume(ConsumeContext<ConsentChanged> context)
    {
        var e = context.Message;
        await using var scope = await db.BeginAsync(e.TenantId, context.CancellationToken);
        var conn = scope.Connection;
        await conn.ExecuteAsync("""
            INSERT INTO contact_consents (tenant_id, contact_id, channel, purpose, status, changed_at)
            VALUES (@TenantId, @ContactId, @Channel, @Purpose, @Status, @OccurredAt)
            ON CONFLICT (tenant_id, contact_id, channel, purpose) DO UPDATE SET status = excluded.status, changed_at = excluded.changed_at
            WHERE contact_consents.changed_at <= excluded.changed_at
            """, new { e.TenantId, e.ContactId, e.Channel, e.Purpose, e.Status, e.OccurredAt });
        await scope.CommitAsync(context.CancellationToken);
    }
}

/// <summary>
/// Erasure reaches everything Delivery keeps of the person: the projection's addresses and consents,
/// the subject and bodies of their messages (ids, times, statuses and reasons stay for the ledger and
/// the reports), the opt-out replies from their number still in the outbox, and their cap sets in Redis.
/// </summary>
public sealed class ContactErasedConsumer(TenantDb db, TenantPolicies policies, FrequencyCaps caps) : IConsumer<ContactErased>
{
    public async Task Consume(ConsumeContext<ContactErased> context)
    {
        var e = context.Message;
        var ct = context.CancellationToken;
        await using var scope = await db.BeginAsync(e.TenantId, ct);
        var conn = scope.Connection;
        var address = await conn.QuerySingleOrDefaultAsync<(string? Phone, string? Email)>(
            "SELECT phone, email FROM contact_channels WHERE tenant_id = @TenantId AND contact_id = @ContactId", new { e.TenantId, e.ContactId });
        await conn.ExecuteAsync("""
            INSERT INTO contact_channels (tenant_id, contact_id, erased, suppressed, version_at)
            VALUES (@TenantId, @ContactId, true, true, @OccurredAt)
            ON CONFLICT (tenant_id, contact_id) DO UPDATE SET erased = true, suppressed = true,
                email = NULL, phone = NULL, time_zone = NULL, locale = NULL, version_at = greatest(contact_channels.version_at, excluded.version_at);
            DELETE FROM contact_consents WHERE tenant_id = @TenantId AND contact_id = @ContactId;
            DELETE FROM engagement_observations WHERE tenant_id = @TenantId AND contact_id = @ContactId;
            UPDATE messages SET subject = NULL, text_body = NULL, html_body = NULL, template_parameters = NULL
            WHERE tenant_id = @TenantId AND contact_id = @ContactId
              AND (subject IS NOT NULL OR text_body IS NOT NULL OR html_body IS NOT NULL OR template_parameters IS NOT NULL);
            """, new { e.TenantId, e.ContactId, e.OccurredAt });
        // Opt-out replies from their number still in the outbox (before the address is cut out below).
        if (address.Phone is not null)
            await conn.ExecuteAsync("""
                UPDATE outbox_messages SET payload = (payload::jsonb || '{"from": "", "body": ""}')::text
                WHERE message_type = @type AND payload::jsonb @> jsonb_build_object('tenantId', @TenantId::text, 'from', @phone::text)
                """, new { type = Outbox.TypeName<SmsReplyReceived>(), e.TenantId, phone = address.Phone });
        // Providers quote the address in their errors ("Invalid 'To' Phone Number: +8210…", an SMTP 550 naming
        // the mailbox), and those reasons travel on: the message, its timeline, the MessagesFailed event still in
        // the outbox and the customer webhooks queued for it. The address is cut out of each; codes and the rest stay.
        // JSON payloads hold the address as their serializer escaped it ('+' as \u002B): both forms are cut.
        foreach (var value in new[] { address.Phone, address.Email }.Where(v => !string.IsNullOrEmpty(v))
                     .SelectMany(v => new[] { v!, System.Text.Json.JsonSerializer.Serialize(v)[1..^1] }).Distinct())
        {
            await conn.ExecuteAsync("""
                UPDATE messages SET reason = replace(reason, @value, '[erased]')
                WHERE tenant_id = @TenantId AND contact_id = @ContactId AND strpos(reason, @value) > 0;
                UPDATE message_events v SET reason = replace(v.reason, @value, '[erased]')
                FROM messages m
                WHERE m.tenant_id = @TenantId AND m.contact_id = @ContactId
                  AND v.tenant_id = m.tenant_id AND v.message_id = m.message_id AND strpos(v.reason, @value) > 0;
                UPDATE webhook_deliveries SET payload = replace(payload, @value, '[erased]')
                WHERE tenant_id = @TenantId AND strpos(payload, @ContactId::text) > 0 AND strpos(payload, @value) > 0;
                UPDATE outbox_messages SET payload = replace(payload, @value, '[erased]')
                WHERE strpos(payload, @TenantId) > 0 AND strpos(payload, @value) > 0;
                """, new { e.TenantId, e.ContactId, value });
        }
        await scope.CommitAsync(ct);
        await caps.ForgetAsync(await policies.GetAsync(e.TenantId, ct), e.ContactId);
    }
}
