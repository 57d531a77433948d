using Crm.BuildingBlocks.Data;
using Crm.Contracts.Contacts;
using Dapper;
using MassTransit;

namespace Crm.Segmentation.Features.Projections;

// Segmentation's own copy of Contacts' profiles, consents, orders and engagement. Each consumer writes
// its rows and marks the contacts it touched dirty, in one transaction; the membership refresh
// (Features/Membership) re-evaluates dirty contacts in batches. Every write is idempotent — profile and
// consent events apply last-writer-wins by OccurredAt, orders and engagement by their natural keys — so a
// redelivered event, or one that overlaps a backfill, changes nothing. Erased contacts stay erased: every
// write skips a contact listed in erased_contacts.

public sealed class ContactUpsertedConsumer(TenantDb db) : IConsumer<ContactUpserted>
{
    public async Task Consume(ConsumeContext<ContactUpserted> context)
    {
        var e = context.Message;
        var ct = context.CancellationToken;
        await using var scope = await db.BeginAsync(e.TenantId, ct);
        await scope.Connection.ExecuteAsync(new CommandDefinition("""
            INSERT INTO contacts (tenant_id, contact_id, external_id, locale, time_zone, tags, attributes, has_email, has_phone,
                                  push_tokens, suppressed, created_at, version_at)
            SELECT @TenantId, @ContactId, @ExternalId, @Locale, @TimeZone, @Tags, @Attributes::jsonb, @HasEmail, @HasPhone,
                   coalesce(@PushTokens, 0), @Suppressed, coalesce(@CreatedAt, @OccurredAt), @OccurredAt
            WHERE NOT EXISTS (SELECT 1 FROM erased_contacts x WHERE x.tenant_id = @TenantId AND x.contact_id = @ContactId)
            ON CONFLICT (tenant_id, contact_id) DO UPDATE SET
                external_id = excluded.external_id, locale = excluded.locale, time_zone = excluded.time_zone,
                tags = excluded.tags, attributes = excluded.attributes, has_email = excluded.has_email,
                has_phone = excluded.has_phone, suppressed = excluded.suppressed, version_at = excluded.version_at,
                push_tokens = CASE WHEN @PushTokens IS NULL THEN contacts.push_tokens ELSE excluded.push_tokens END,
                created_at = CASE WHEN @CreatedAt IS NULL THEN least(contacts.created_at, excluded.created_at) ELSE excluded.created_at END
            WHERE contacts.version_at <= excluded.version_at
            """ + Dirty.MarkOne, new
        {
            e.TenantId, e.ContactId, e.ExternalId, e.Locale, e.TimeZone, Tags = e.Tags.ToArray(), Attributes = e.AttributesJson,
            HasEmail = !string.IsNullOrEmpty(e.Email), HasPhone = !string.IsNullOrEmpty(e.Phone), e.PushTokens, e.Suppressed,
            e.CreatedAt, e.OccurredAt,
        }, scope.Transaction, cancellationToken: ct));
        await scope.CommitAsync(ct);
    }
}

public sealed class ConsentChangedConsumer(TenantDb db) : IConsumer<ConsentChanged>
{
    public async Task Consume(ConsumeContext<ConsentChanged> context)
    {
        var e = context.Message;
        var ct = context.CancellationToken;
        await using var scope = await db.BeginAsync(e.TenantId, ct);
        await scope.Connection.ExecuteAsync(new CommandDefinition(Dirty.EnsureContact + """
            INSERT INTO consents (tenant_id, contact_id, channel, purpose, status, changed_at)
            SELECT @TenantId, @ContactId, @Channel, @Purpose, @Status, @OccurredAt
            WHERE NOT EXISTS (SELECT 1 FROM erased_contacts x WHERE x.tenant_id = @TenantId AND x.contact_id = @ContactId)
            ON CONFLICT (tenant_id, contact_id, channel, purpose) DO UPDATE SET status = excluded.status, changed_at = excluded.changed_at
            WHERE consents.changed_at <= excluded.changed_at;
            """ + Dirty.MarkOne, new { e.TenantId, e.ContactId, e.Channel, e.Purpose, e.Status, e.OccurredAt },
            scope.Transaction, cancellationToken: ct));
        await scope.CommitAsync(ct);
    }
}

/// <summary>
/// Erasure reaches the projections: every row about the contact goes (orders and engagement included — a
/// segment's figures then no longer count them, as Contacts' own reports no longer name them), and the
/// contact is remembered as erased so that a late event cannot bring them back. Their memberships are
/// left to the refresh, which finds no contact and publishes that they left each segment.
/// </summary>
public sealed class ContactErasedConsumer(TenantDb db) : IConsumer<ContactErased>
{
    public async Task Consume(ConsumeContext<ContactErased> context)
    {
        var e = context.Message;
        var ct = context.CancellationToken;
        await using var scope = await db.BeginAsync(e.TenantId, ct);
        await scope.Connection.ExecuteAsync(new CommandDefinition("""
            INSERT INTO erased_contacts (tenant_id, contact_id, erased_at) VALUES (@TenantId, @ContactId, @OccurredAt)
            ON CONFLICT DO NOTHING;
            DELETE FROM contacts WHERE tenant_id = @TenantId AND contact_id = @ContactId;
            DELETE FROM consents WHERE tenant_id = @TenantId AND contact_id = @ContactId;
            DELETE FROM unreachable_channels WHERE tenant_id = @TenantId AND contact_id = @ContactId;
            DELETE FROM orders WHERE tenant_id = @TenantId AND contact_id = @ContactId;
            DELETE FROM engagement WHERE tenant_id = @TenantId AND contact_id = @ContactId;
            DELETE FROM messages WHERE tenant_id = @TenantId AND contact_id = @ContactId;
            """ + ErasureHooks.Sql + Dirty.MarkOne, new { e.TenantId, e.ContactId, e.OccurredAt }, scope.Transaction, cancellationToken: ct));
        await scope.CommitAsync(ct);
    }
}

/// <summary>
/// What else erasure deletes: the per-contact tables of RFM, lead scoring and tiers. Each capability
/// that keeps a per-contact row adds its statement here.
/// </summary>
public static class ErasureHooks
{
    public const string Sql = """
        SELECT pg_advisory_xact_lock(hashtextextended('rfm:' || @TenantId, 0)); -- waits out a running RFM recompute, which could write the contact's scores again
        DELETE FROM rfm_scores WHERE tenant_id = @TenantId AND contact_id = @ContactId;
        """;
}

public sealed class TransactionsRecordedConsumer(TenantDb db) : IConsumer<TransactionsRecorded>
{
    public async Task Consume(ConsumeContext<TransactionsRecorded> context)
    {
        var e = context.Message;
        var ct = context.CancellationToken;
        var orders = e.Orders.Where(o => o.ContactId is not null).ToArray(); // guest orders belong to nobody
        if (orders.Length == 0) return;
        await using var scope = await db.BeginAsync(e.TenantId, ct);
        await OrderProjection.ApplyAsync(scope, e.TenantId, orders, ct);
        await scope.CommitAsync(ct);
    }
}

/// <summary>Writes orders into the projection (one row each, lines as parallel arrays) and marks their contacts dirty.</summary>
public static class OrderProjection
{
    public static Task ApplyAsync(TenantTransaction scope, string tenant, IReadOnlyList<RecordedOrder> orders, CancellationToken ct)
    {
        var n = orders.Count;
        var lines = new string[n];
        for (var i = 0; i < n; i++) lines[i] = LinesJson(orders[i]);
        return scope.Connection.ExecuteAsync(new CommandDefinition("""
            WITH o AS (
                SELECT * FROM unnest(@contactIds, @orderIds, @occurredAts, @currencies, @totals, @statuses, @lines)
                    AS o(contact_id, order_id, occurred_at, currency, total, status, lines)
                WHERE NOT EXISTS (SELECT 1 FROM erased_contacts x WHERE x.tenant_id = @tenant AND x.contact_id = o.contact_id)
            ), contacts_seen AS (
                INSERT INTO contacts (tenant_id, contact_id, created_at)
                SELECT @tenant, contact_id, min(occurred_at) FROM o GROUP BY contact_id
                ON CONFLICT (tenant_id, contact_id) DO UPDATE SET created_at = least(contacts.created_at, excluded.created_at)
                WHERE contacts.version_at = '-infinity' AND contacts.created_at > excluded.created_at
            ), written AS (
                INSERT INTO orders (tenant_id, order_id, contact_id, occurred_at, currency, total, status, skus, categories, amounts)
                SELECT @tenant, o.order_id, o.contact_id, o.occurred_at, o.currency, o.total, o.status,
                       ARRAY(SELECT l->>0 FROM jsonb_array_elements(o.lines::jsonb->'l') l),
                       ARRAY(SELECT l->>1 FROM jsonb_array_elements(o.lines::jsonb->'l') l WHERE l->>1 IS NOT NULL),
                       CASE WHEN o.lines::jsonb ? 'a' THEN ARRAY(SELECT (a)::numeric FROM jsonb_array_elements_text(o.lines::jsonb->'a') a) END
                FROM o
                ON CONFLICT (tenant_id, order_id) DO UPDATE SET
                    contact_id = excluded.contact_id, occurred_at = excluded.occurred_at, currency = excluded.currency,
                    total = excluded.total, status = excluded.status, skus = excluded.skus, categories = excluded.categories,
                    amounts = coalesce(excluded.amounts, orders.amounts)
                RETURNING contact_id
            )
            INSERT INTO dirty_contacts (tenant_id, contact_id)
            SELECT DISTINCT @tenant, contact_id FROM written
            ON CONFLICT (tenant_id, contact_id) DO UPDATE SET marked_at = now()
            """, new
        {
            tenant,
            contactIds = orders.Select(o => o.ContactId!.Value).ToArray(),
            orderIds = orders.Select(o => o.OrderId).ToArray(),
            occurredAts = orders.Select(o => o.OccurredAt.UtcDateTime).ToArray(),
            currencies = orders.Select(o => o.Currency).ToArray(),
            totals = orders.Select(o => o.Total).ToArray(),
            statuses = orders.Select(o => o.Status).ToArray(),
            lines,
        }, scope.Transaction, cancellationToken: ct));
    }

    /// <summary>
    /// {"l": [[sku, category], ...], "a": [amount, ...]}: with lines, one entry per line and its amount; without,
    /// the order's distinct skus and categories (as older events carry them) and no amounts.
    /// </summary>
    private static string LinesJson(RecordedOrder o)
    {
        var buffer = new System.Buffers.ArrayBufferWriter<byte>();
        using (var w = new System.Text.Json.Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteStartArray("l");
            if (o.Lines is { } lines)
            {
                foreach (var l in lines) { w.WriteStartArray(); w.WriteStringValue(l.Sku); w.WriteStringValue(l.Category); w.WriteEndArray(); }
            }
            else
            {
                var n = Math.Max(o.Skus.Count, o.Categories.Count);
                for (var i = 0; i < n; i++)
                {
                    w.WriteStartArray();
                    w.WriteStringValue(i < o.Skus.Count ? o.Skus[i] : null);
                    w.WriteStringValue(i < o.Categories.Count ? o.Categories[i] : null);
                    w.WriteEndArray();
                }
            }
            w.WriteEndArray();
            if (o.Lines is { } withAmounts)
            {
                w.WriteStartArray("a");
                foreach (var l in withAmounts) w.WriteNumberValue(l.Amount);
                w.WriteEndArray();
            }
            w.WriteEndObject();
        }
        return System.Text.Encoding.UTF8.GetString(buffer.WrittenSpan);
    }
}

public sealed class EngagementRecordedConsumer(TenantDb db) : IConsumer<EngagementRecorded>
{
    public async Task Consume(ConsumeContext<EngagementRecorded> context)
    {
        var e = context.Message;
        var ct = context.CancellationToken;
        if (e.Events.Count == 0) return;
        await using var scope = await db.BeginAsync(e.TenantId, ct);
        await scope.Connection.ExecuteAsync(new CommandDefinition("""
            WITH ev AS (
                SELECT * FROM unnest(@eventIds, @contactIds, @types, @names, @channels, @messageIds, @campaignIds, @occurredAts, @properties)
                    AS ev(event_id, contact_id, type, name, channel, message_id, campaign_id, occurred_at, properties)
                WHERE NOT EXISTS (SELECT 1 FROM erased_contacts x WHERE x.tenant_id = @tenant AND x.contact_id = ev.contact_id)
            ), contacts_seen AS (
                INSERT INTO contacts (tenant_id, contact_id, created_at)
                SELECT @tenant, contact_id, min(occurred_at) FROM ev GROUP BY contact_id
                ON CONFLICT (tenant_id, contact_id) DO NOTHING
            ), written AS (
                INSERT INTO engagement (tenant_id, event_id, contact_id, type, name, channel, message_id, campaign_id, occurred_at, properties)
                SELECT @tenant, event_id, contact_id, type, name, channel, message_id, campaign_id, occurred_at, coalesce(properties::jsonb, '{}')
                FROM ev
                ON CONFLICT (tenant_id, event_id) DO NOTHING
                RETURNING contact_id
            )
            INSERT INTO dirty_contacts (tenant_id, contact_id)
            SELECT DISTINCT @tenant, contact_id FROM written
            ON CONFLICT (tenant_id, contact_id) DO UPDATE SET marked_at = now()
            """, new
        {
            tenant = e.TenantId,
            eventIds = e.Events.Select(x => x.EventId).ToArray(),
            contactIds = e.Events.Select(x => x.ContactId).ToArray(),
            types = e.Events.Select(x => x.Type).ToArray(),
            names = e.Events.Select(x => x.Name).ToArray(),
            channels = e.Events.Select(x => x.Channel).ToArray(),
            messageIds = e.Events.Select(x => x.MessageId).ToArray(),
            campaignIds = e.Events.Select(x => x.CampaignId).ToArray(),
            occurredAts = e.Events.Select(x => x.OccurredAt.UtcDateTime).ToArray(),
            properties = e.Events.Select(x => x.PropertiesJson).ToArray(),
        }, scope.Transaction, cancellationToken: ct));
        await scope.CommitAsync(ct);
    }
}

/// <summary>SQL fragments every projection shares: the contact row an event implies, and the dirty mark.</summary>
internal static class Dirty
{
    /// <summary>A contact first seen through a consent or an outcome gets a bare row (no profile yet).</summary>
    public const string EnsureContact = """
        INSERT INTO contacts (tenant_id, contact_id, created_at)
        SELECT @TenantId, @ContactId, @OccurredAt
        WHERE NOT EXISTS (SELECT 1 FROM erased_contacts x WHERE x.tenant_id = @TenantId AND x.contact_id = @ContactId)
        ON CONFLICT (tenant_id, contact_id) DO NOTHING;

        """;

    public const string MarkOne = """
        ;
        INSERT INTO dirty_contacts (tenant_id, contact_id) VALUES (@TenantId, @ContactId)
        ON CONFLICT (tenant_id, contact_id) DO UPDATE SET marked_at = now();
        """;
}
