using System.Text.Json;
using Crm.BuildingBlocks.Data;
using Crm.BuildingBlocks.Outbox;
using Crm.Contracts.Contacts;
using Dapper;
using MassTransit;
using Npgsql;

namespace Crm.Campaigns.Features.Experiments;

/// <summary>
/// Conversions: a goal event (a completed order, or a named engagement event) converts for the campaign whose
/// touch came last before it, among the campaigns whose goal it is and whose window (1 to 90 days, default 7)
/// still covers it. A touch is the first "sent" outcome of a recipient's message, or, for a holdout contact,
/// when they would have been sent (their local send time, else the run's start). Ties between touches at the same instant
/// go to a message over a holdout assignment (the message reached the contact), then to the run created
/// later, then to the greater run id. An event converts once at most (a unique index), revenue = the order's
/// total (0 for named events).
///
/// Attribution runs when the event arrives, and again for a campaign's contacts when its report is read, so
/// that an order whose send outcome was recorded after it still counts; both are one idempotent statement.
/// </summary>
public sealed class ConversionAttribution(TenantDb db)
{
    public const string Description =
        "last touch: the goal event converts for the campaign whose message was sent last before it (a holdout contact's " +
        "touch is when they would have been sent) within that campaign's window; ties go to a sent message over a holdout " +
        "assignment, then to the run created later, then to the greater run id; an event converts once at most";

    private const string AttributeSql = """
        WITH g AS (
            SELECT * FROM goal_events
            WHERE tenant_id = @tenant
              AND (@sources::text[] IS NULL OR source_id = ANY(@sources))
              AND (@campaignId::uuid IS NULL OR contact_id IN (
                    SELECT contact_id FROM recipients WHERE tenant_id = @tenant AND campaign_id = @campaignId))
              AND NOT EXISTS (SELECT 1 FROM conversions x WHERE x.tenant_id = @tenant AND x.source_id = goal_events.source_id)
        ), touches AS (
            SELECT r.campaign_id, r.run_id, r.contact_id, r.variant_id, false AS holdout, min(o.occurred_at) AS touched_at
            FROM recipients r
            JOIN outcomes o ON o.tenant_id = @tenant AND o.run_id = r.run_id AND o.contact_id = r.contact_id AND o.kind = 'sent'
            WHERE r.tenant_id = @tenant AND NOT r.holdout AND r.contact_id IN (SELECT contact_id FROM g)
            GROUP BY r.campaign_id, r.run_id, r.contact_id, r.variant_id
            UNION ALL
            SELECT r.campaign_id, r.run_id, r.contact_id, NULL, true, coalesce(r.send_at, r.outcome_at, hr.started_at, hr.scheduled_for)
            FROM recipients r JOIN campaign_runs hr ON hr.tenant_id = @tenant AND hr.run_id = r.run_id
            WHERE r.tenant_id = @tenant AND r.status = 'holdout' AND r.contact_id IN (SELECT contact_id FROM g)
        ), best AS (
            SELECT DISTINCT ON (g.source_id) g.source_id, g.contact_id, g.revenue, g.currency, g.occurred_at,
                   t.campaign_id, t.run_id, t.variant_id, t.holdout, t.touched_at
            FROM g
            JOIN touches t ON t.contact_id = g.contact_id
            JOIN campaigns c ON c.tenant_id = @tenant AND c.campaign_id = t.campaign_id
            JOIN campaign_runs cr ON cr.tenant_id = @tenant AND cr.run_id = t.run_id
            WHERE t.touched_at <= g.occurred_at
              AND g.occurred_at < t.touched_at + make_interval(days => c.conversion_window_days)
              AND ((c.conversion_kind = 'order' AND g.kind = 'order')
                OR (c.conversion_kind = 'event' AND g.kind = 'event' AND g.name = c.conversion_event))
            ORDER BY g.source_id, t.touched_at DESC, t.holdout, cr.created_at DESC, t.run_id DESC
        )
        INSERT INTO conversions (tenant_id, source_id, campaign_id, run_id, contact_id, variant_id, holdout, revenue, currency,
                                 occurred_at, attributed_from)
        SELECT @tenant, source_id, campaign_id, run_id, contact_id, variant_id, holdout, revenue, currency, occurred_at, touched_at
        FROM best
        ON CONFLICT DO NOTHING
        """;

    /// <summary>Attributes the named goal events (just recorded); returns how many converted.</summary>
    public Task<int> AttributeAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, string tenant, string[] sourceIds, CancellationToken ct) =>
        connection.ExecuteAsync(new CommandDefinition(AttributeSql, new { tenant, sources = sourceIds, campaignId = (Guid?)null }, transaction, cancellationToken: ct));

    /// <summary>Attributes what is still unattributed among the campaign's contacts' goal events (outcomes recorded late).</summary>
    public async Task<int> CatchUpAsync(string tenant, Guid campaignId, CancellationToken ct)
    {
        await using var scope = await db.BeginAsync(tenant, ct);
        var n = await scope.Connection.ExecuteAsync(new CommandDefinition(AttributeSql,
            new { tenant, sources = (string[]?)null, campaignId = (Guid?)campaignId }, scope.Transaction, cancellationToken: ct));
        await scope.CommitAsync(ct);
        return n;
    }

    /// <summary>Records goal events by their natural key and attributes them, once per bus message (inbox).</summary>
    internal static async Task RecordAsync(TenantDb db, ConversionAttribution attribution, ConsumeContext context, string consumer, string tenant,
        IReadOnlyList<GoalEvent> events, Func<NpgsqlConnection, NpgsqlTransaction, Task>? alsoInTransaction = null)
    {
        var ct = context.CancellationToken;
        await using var scope = await db.BeginAsync(tenant, ct);
        var (conn, tx) = scope;
        if (!await Inbox.TryBeginAsync(conn, tx, consumer, context.MessageId ?? Guid.NewGuid())) return;
        if (events.Count > 0)
        {
            await conn.ExecuteAsync(new CommandDefinition("""
                INSERT INTO goal_events (tenant_id, source_id, contact_id, kind, name, occurred_at, revenue, currency)
                SELECT @tenant, * FROM unnest(@sources, @contacts, @kinds, @names, @occurred, @revenues, @currencies)
                ON CONFLICT DO NOTHING
                """, new
            {
                tenant,
                sources = events.Select(e => e.SourceId).ToArray(),
                contacts = events.Select(e => e.ContactId).ToArray(),
                kinds = events.Select(e => e.Kind).ToArray(),
                names = events.Select(e => e.Name).ToArray(),
                occurred = events.Select(e => e.OccurredAt.UtcDateTime).ToArray(),
                revenues = events.Select(e => e.Revenue).ToArray(),
                currencies = events.Select(e => e.Currency).ToArray(),
            }, tx, cancellationToken: ct));
            await attribution.AttributeAsync(conn, tx, tenant, events.Select(e => e.SourceId).ToArray(), ct);
        }
        if (alsoInTransaction is not null) await alsoInTransaction(conn, tx);
        await scope.CommitAsync(ct);
    }

    internal sealed record GoalEvent(string SourceId, Guid ContactId, string Kind, string? Name, DateTimeOffset OccurredAt, decimal Revenue, string? Currency);
}

/// <summary>Completed orders are goal events of campaigns whose goal is an order; revenue is the order's total.</summary>
public sealed class OrderGoalConsumer(TenantDb db, ConversionAttribution attribution) : IConsumer<TransactionsRecorded>
{
    public Task Consume(ConsumeContext<TransactionsRecorded> context)
    {
        var e = context.Message;
        var goals = e.Orders
            .Where(o => o.ContactId is not null && o.Status == "completed")
            .Select(o => new ConversionAttribution.GoalEvent("order:" + o.OrderId, o.ContactId!.Value, "order", null, o.OccurredAt, o.Total, o.Currency))
            .ToList();
        return ConversionAttribution.RecordAsync(db, attribution, context, nameof(OrderGoalConsumer), e.TenantId, goals);
    }
}

/// <summary>
/// Named engagement events (custom or converted, with a name) are goal events of campaigns whose goal names them.
/// Deliveries, opens and clicks of a campaign's messages become the run's outcomes the report counts; an open
/// whose properties say it was a machine's (a mail privacy proxy: "machine_open" or "machine" true) is kept
/// apart as machine_opened.
/// </summary>
public sealed class EngagementGoalConsumer(TenantDb db, ConversionAttribution attribution) : IConsumer<EngagementRecorded>
{
    public Task Consume(ConsumeContext<EngagementRecorded> context)
    {
        var e = context.Message;
        var goals = e.Events
            .Where(x => x.Type is "custom" or "converted" && !string.IsNullOrEmpty(x.Name))
            .Select(x => new ConversionAttribution.GoalEvent("event:" + x.EventId, x.ContactId, "event", x.Name, x.OccurredAt, 0m, null))
            .ToList();
        var engagement = e.Events
            .Where(x => x.Type is "delivered" or "opened" or "clicked" && Guid.TryParse(x.CampaignId, out _))
            .ToList();
        return ConversionAttribution.RecordAsync(db, attribution, context, nameof(EngagementGoalConsumer), e.TenantId, goals,
            engagement.Count == 0 ? null : (conn, tx) => RecordOutcomesAsync(conn, tx, e.TenantId, engagement, context.CancellationToken));
    }

    private static Task RecordOutcomesAsync(NpgsqlConnection conn, NpgsqlTransaction tx, string tenant, List<RecordedEngagement> events, CancellationToken ct) =>
        // The recipient is the contact's in the campaign's latest run that handed them a message; the message id is
        // the event's when it names one, else the one Delivery reported for the recipient.
        conn.ExecuteAsync(new CommandDefinition("""
            INSERT INTO outcomes (tenant_id, run_id, contact_id, message_id, kind, channel, occurred_at)
            SELECT @tenant, r.run_id, r.contact_id, coalesce(e.message_id, r.message_id), e.kind, coalesce(e.channel, r.channel, ''), e.occurred_at
            FROM unnest(@campaigns, @contacts, @messages, @kinds, @channels, @occurred) AS e(campaign_id, contact_id, message_id, kind, channel, occurred_at)
            CROSS JOIN LATERAL (
                SELECT rr.run_id, rr.contact_id, rr.message_id, rr.channel
                FROM recipients rr JOIN campaign_runs cr ON cr.tenant_id = rr.tenant_id AND cr.run_id = rr.run_id
                WHERE rr.tenant_id = @tenant AND rr.campaign_id = e.campaign_id AND rr.contact_id = e.contact_id AND NOT rr.holdout
                  AND (e.message_id IS NULL OR rr.message_id IS NULL OR rr.message_id = e.message_id)
                ORDER BY cr.created_at DESC LIMIT 1) r
            WHERE coalesce(e.message_id, r.message_id) IS NOT NULL
            ON CONFLICT DO NOTHING
            """, new
        {
            tenant,
            campaigns = events.Select(x => Guid.Parse(x.CampaignId!)).ToArray(),
            contacts = events.Select(x => x.ContactId).ToArray(),
            messages = events.Select(x => Guid.TryParse(x.MessageId, out var m) ? m : (Guid?)null).ToArray(),
            kinds = events.Select(x => x.Type == "opened" && IsMachineOpen(x.PropertiesJson) ? "machine_opened" : x.Type).ToArray(),
            channels = events.Select(x => x.Channel).ToArray(),
            occurred = events.Select(x => x.OccurredAt.UtcDateTime).ToArray(),
        }, tx, cancellationToken: ct));

    internal static bool IsMachineOpen(string? propertiesJson)
    {
        if (string.IsNullOrEmpty(propertiesJson)) return false;
        try
        {
            using var doc = JsonDocument.Parse(propertiesJson);
            if (doc.RootElement.ValueKind != JsonValueKind.Object) return false;
            foreach (var name in (string[])["machine_open", "machine"])
                if (doc.RootElement.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.True) return true;
            return false;
        }
        catch (JsonException)
        {
            return false;
        }
    }
}
