using Crm.BuildingBlocks.Data;
using Crm.BuildingBlocks.Messaging;
using Crm.Contracts.Delivery;
using Dapper;
using MassTransit;

namespace Crm.Campaigns.Features.Progress;

// Progress from Delivery's outcome events, never from a counter: each outcome of a campaign's message is
// recorded (natural key: message and kind, so a redelivered event adds nothing) and moves its recipient
// out of "enqueued". A recipient is matched by (campaign, contact): a campaign hands a contact at most one
// message across its runs (the snapshot leaves out contacts it already sent to), so the pair names it.
// A message withdrawn by CancelMessages comes back suppressed with "cancelled: ..." and counts as cancelled.

public static class ProgressConsumers
{
    public static void AddProgressConsumers(this IBusRegistrationConfigurator bus)
    {
        bus.AddConsumer<MessagesSentConsumer, ProjectionConsumerDefinition<MessagesSentConsumer>>();
        bus.AddConsumer<MessagesSuppressedConsumer, ProjectionConsumerDefinition<MessagesSuppressedConsumer>>();
        bus.AddConsumer<MessagesFailedConsumer, ProjectionConsumerDefinition<MessagesFailedConsumer>>();
    }
}

public static class Outcomes
{
    public sealed record Row(Guid CampaignId, Guid ContactId, Guid MessageId, string Kind, string Channel, string? Reason, string? RuleId, DateTimeOffset At);

    /// <summary>Records outcomes and moves recipients on; an outcome of a message that is not a campaign's is ignored.</summary>
    public static async Task ApplyAsync(TenantDb db, string tenant, IReadOnlyList<Row> rows, CancellationToken ct)
    {
        if (rows.Count == 0) return;
        await using var scope = await db.BeginAsync(tenant, ct);
        await scope.Connection.ExecuteAsync(new CommandDefinition("""
            WITH o AS (
                SELECT * FROM unnest(@campaignIds, @contactIds, @messageIds, @kinds, @channels, @reasons, @ruleIds, @ats)
                    AS o(campaign_id, contact_id, message_id, kind, channel, reason, rule_id, occurred_at)
            ), r AS (
                SELECT DISTINCT ON (o.message_id) o.*, rc.run_id
                FROM o JOIN recipients rc ON rc.tenant_id = @tenant AND rc.campaign_id = o.campaign_id AND rc.contact_id = o.contact_id
                                         AND rc.enqueued_at IS NOT NULL
                ORDER BY o.message_id, rc.enqueued_at DESC
            ), recorded AS (
                INSERT INTO outcomes (tenant_id, run_id, contact_id, message_id, kind, channel, reason, rule_id, occurred_at)
                SELECT @tenant, run_id, contact_id, message_id, kind, channel, reason, rule_id, occurred_at FROM r
                ON CONFLICT DO NOTHING
            )
            UPDATE recipients rc SET status = CASE WHEN r.kind = 'suppressed' AND r.reason LIKE 'cancelled:%' THEN 'cancelled' ELSE r.kind END,
                message_id = r.message_id, channel = r.channel, reason = r.reason, rule_id = r.rule_id, outcome_at = r.occurred_at
            FROM r
            WHERE rc.tenant_id = @tenant AND rc.run_id = r.run_id AND rc.contact_id = r.contact_id
              AND (rc.status IN ('enqueued', 'deferred') OR (rc.status = 'sent' AND r.kind = 'delivered'))
            """, new
        {
            tenant,
            campaignIds = rows.Select(r => r.CampaignId).ToArray(),
            contactIds = rows.Select(r => r.ContactId).ToArray(),
            messageIds = rows.Select(r => r.MessageId).ToArray(),
            kinds = rows.Select(r => r.Kind).ToArray(),
            channels = rows.Select(r => r.Channel).ToArray(),
            reasons = rows.Select(r => r.Reason).ToArray(),
            ruleIds = rows.Select(r => r.RuleId).ToArray(),
            ats = rows.Select(r => r.At.UtcDateTime).ToArray(),
        }, scope.Transaction, cancellationToken: ct));
        await scope.CommitAsync(ct);
    }

    public static Guid? Campaign(string? campaignId) => Guid.TryParse(campaignId, out var id) ? id : null;
}

public sealed class MessagesSentConsumer(TenantDb db) : IConsumer<MessagesSent>
{
    public Task Consume(ConsumeContext<MessagesSent> context) =>
        Outcomes.ApplyAsync(db, context.Message.TenantId, context.Message.Messages
            .Where(m => Outcomes.Campaign(m.CampaignId) is not null)
            .Select(m => new Outcomes.Row(Outcomes.Campaign(m.CampaignId)!.Value, m.ContactId, m.MessageId, "sent", m.Channel, null, null, m.SentAt)).ToList(),
            context.CancellationToken);
}

public sealed class MessagesSuppressedConsumer(TenantDb db) : IConsumer<MessagesSuppressed>
{
    public Task Consume(ConsumeContext<MessagesSuppressed> context) =>
        Outcomes.ApplyAsync(db, context.Message.TenantId, context.Message.Messages
            .Where(m => Outcomes.Campaign(m.CampaignId) is not null)
            .Select(m => new Outcomes.Row(Outcomes.Campaign(m.CampaignId)!.Value, m.ContactId, m.MessageId, "suppressed", m.Channel, m.Reason, m.RuleId, m.SuppressedAt)).ToList(),
            context.CancellationToken);
}

public sealed class MessagesFailedConsumer(TenantDb db) : IConsumer<MessagesFailed>
{
    public Task Consume(ConsumeContext<MessagesFailed> context) =>
        Outcomes.ApplyAsync(db, context.Message.TenantId, context.Message.Messages
            .Where(m => Outcomes.Campaign(m.CampaignId) is not null)
            .Select(m => new Outcomes.Row(Outcomes.Campaign(m.CampaignId)!.Value, m.ContactId, m.MessageId, "failed", m.Channel, m.Reason, null, m.FailedAt)).ToList(),
            context.CancellationToken);
}
