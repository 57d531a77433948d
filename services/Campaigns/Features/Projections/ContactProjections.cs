using Crm.Contracts.Delivery;
using Crm.BuildingBlocks.Outbox;
using Crm.BuildingBlocks.Data;
using Crm.BuildingBlocks.Messaging;
using Crm.Contracts.Contacts;
using Crm.Contracts.Segmentation;
using Dapper;
using MassTransit;

namespace Crm.Campaigns.Features.Projections;

// The template model's lean projection: Contacts' ContactUpserted (profile, typed attributes, channels),
// ContactErased (the rows go, and a late event cannot bring them back), TransactionsRecorded (orders by
// their natural key) and Segmentation's TierChanged. Every write is idempotent: profiles and tiers apply
// last-writer-wins by OccurredAt, orders by order id, so a redelivered event changes nothing.

public static class ProjectionConsumers
{
    public static void AddProjectionConsumers(this IBusRegistrationConfigurator bus)
    {
        bus.AddConsumer<ContactUpsertedConsumer, ProjectionConsumerDefinition<ContactUpsertedConsumer>>();
        bus.AddConsumer<ContactErasedConsumer, ProjectionConsumerDefinition<ContactErasedConsumer>>();
        bus.AddConsumer<TransactionsRecordedConsumer, ProjectionConsumerDefinition<TransactionsRecordedConsumer>>();
        bus.AddConsumer<TierChangedConsumer, ProjectionConsumerDefinition<TierChangedConsumer>>();
    }
}

public sealed class ContactUpsertedConsumer(TenantDb db) : IConsumer<ContactUpserted>
{
    public async Task Consume(ConsumeContext<ContactUpserted> context)
    {
        var e = context.Message;
        await using var scope = await db.BeginAsync(e.TenantId, context.CancellationToken);
        await scope.Connection.ExecuteAsync(new CommandDefinition("""
            INSERT INTO contacts (tenant_id, contact_id, external_id, locale, time_zone, attributes, has_email, has_phone, push_tokens, version_at)
            SELECT @tenant, @contactId, @externalId, @locale, @timeZone, @attributes::jsonb, @hasEmail, @hasPhone, coalesce(@pushTokens, 0), @at
            WHERE NOT EXISTS (SELECT 1 FROM erased_contacts x WHERE x.tenant_id = @tenant AND x.contact_id = @contactId)
            ON CONFLICT (tenant_id, contact_id) DO UPDATE SET
                external_id = excluded.external_id, locale = excluded.locale, time_zone = excluded.time_zone,
                attributes = excluded.attributes, has_email = excluded.has_email, has_phone = excluded.has_phone,
                push_tokens = coalesce(@pushTokens, contacts.push_tokens), version_at = excluded.version_at
            WHERE contacts.version_at <= excluded.version_at
            """, new
        {
            tenant = e.TenantId, contactId = e.ContactId, externalId = e.ExternalId, locale = e.Locale, timeZone = e.TimeZone,
            attributes = string.IsNullOrEmpty(e.AttributesJson) ? "{}" : e.AttributesJson,
            hasEmail = !string.IsNullOrEmpty(e.Email), hasPhone = !string.IsNullOrEmpty(e.Phone), pushTokens = e.PushTokens,
            at = e.OccurredAt.UtcDateTime,
        }, scope.Transaction, cancellationToken: context.CancellationToken));
        await scope.CommitAsync(context.CancellationToken);
    }
}

public sealed class ContactErasedConsumer(TenantDb db) : IConsumer<ContactErased>
{
    public async Task Consume(ConsumeContext<ContactErased> context)
    {
        var e = context.Message;
        await using var scope = await db.BeginAsync(e.TenantId, context.CancellationToken);
        await scope.Connection.ExecuteAsync(new CommandDefinition("""
            INSERT INTO erased_contacts (tenant_id, contact_id, erased_at) VALUES (@tenant, @contactId, @at) ON CONFLICT DO NOTHING;
            DELETE FROM contacts WHERE tenant_id = @tenant AND contact_id = @contactId;
            DELETE FROM orders WHERE tenant_id = @tenant AND contact_id = @contactId;
            -- Rendered messages still in the outbox carry what the templates put in them (names, attributes):
            -- the contact's are emptied (a command not yet published then fails at Delivery, which refuses the
            -- erased contact anyway).
            UPDATE outbox_messages o SET payload = jsonb_set(o.payload::jsonb, '{messages}', (
                    SELECT jsonb_agg(CASE WHEN m->>'contactId' = @contactId::text
                                          THEN m || '{"subject": null, "textBody": null, "htmlBody": null, "templateParameters": null}'::jsonb
                                          ELSE m END ORDER BY i)
                    FROM jsonb_array_elements(o.payload::jsonb -> 'messages') WITH ORDINALITY AS x(m, i)))::text
            WHERE o.message_type = @type AND strpos(o.payload, @tenant) > 0 AND strpos(o.payload, @contactId::text) > 0;
            """, new { tenant = e.TenantId, contactId = e.ContactId, at = e.OccurredAt.UtcDateTime, type = Outbox.TypeName<DeliverMessage>() }, scope.Transaction, cancellationToken: context.CancellationToken));
        await scope.CommitAsync(context.CancellationToken);
    }
}

public sealed class TransactionsRecordedConsumer(TenantDb db) : IConsumer<TransactionsRecorded>
{
    public async Task Consume(ConsumeContext<TransactionsRecorded> context)
    {
        var e = context.Message;
        var orders = e.Orders.Where(o => o.ContactId is not null).ToList();
        if (orders.Count == 0) return;
        await using var scope = await db.BeginAsync(e.TenantId, context.CancellationToken);
        // A later event for the same order (a refund) replaces its status and total.
        await scope.Connection.ExecuteAsync(new CommandDefinition("""
            INSERT INTO orders (tenant_id, order_id, contact_id, occurred_at, currency, total, status, categories)
            SELECT @tenant, o.order_id, o.contact_id, o.occurred_at, o.currency, o.total, o.status, ARRAY(SELECT jsonb_array_elements_text(o.categories::jsonb))
            FROM unnest(@orderIds, @contactIds, @occurredAts, @currencies, @totals, @statuses, @categories)
                 AS o(order_id, contact_id, occurred_at, currency, total, status, categories)
            WHERE NOT EXISTS (SELECT 1 FROM erased_contacts x WHERE x.tenant_id = @tenant AND x.contact_id = o.contact_id)
            ON CONFLICT (tenant_id, order_id) DO UPDATE SET status = excluded.status, total = excluded.total, categories = excluded.categories
            """, new
        {
            tenant = e.TenantId,
            orderIds = orders.Select(o => o.OrderId).ToArray(),
            contactIds = orders.Select(o => o.ContactId!.Value).ToArray(),
            occurredAts = orders.Select(o => o.OccurredAt.UtcDateTime).ToArray(),
            currencies = orders.Select(o => o.Currency).ToArray(),
            totals = orders.Select(o => o.Total).ToArray(),
            statuses = orders.Select(o => o.Status).ToArray(),
            categories = orders.Select(o => System.Text.Json.JsonSerializer.Serialize(o.Categories)).ToArray(),
        }, scope.Transaction, cancellationToken: context.CancellationToken));
        await scope.CommitAsync(context.CancellationToken);
    }
}

public sealed class TierChangedConsumer(TenantDb db) : IConsumer<TierChanged>
{
    public async Task Consume(ConsumeContext<TierChanged> context)
    {
        var e = context.Message;
        await using var scope = await db.BeginAsync(e.TenantId, context.CancellationToken);
        await scope.Connection.ExecuteAsync(new CommandDefinition("""
            INSERT INTO contacts (tenant_id, contact_id, tier, tier_version_at)
            SELECT @tenant, @contactId, @tier, @at
            WHERE NOT EXISTS (SELECT 1 FROM erased_contacts x WHERE x.tenant_id = @tenant AND x.contact_id = @contactId)
            ON CONFLICT (tenant_id, contact_id) DO UPDATE SET tier = excluded.tier, tier_version_at = excluded.tier_version_at
            WHERE contacts.tier_version_at <= excluded.tier_version_at
            """, new { tenant = e.TenantId, contactId = e.ContactId, tier = e.To, at = e.OccurredAt.UtcDateTime },
            scope.Transaction, cancellationToken: context.CancellationToken));
        await scope.CommitAsync(context.CancellationToken);
    }
}
