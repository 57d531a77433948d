using Crm.BuildingBlocks.Data;
using Crm.Contracts.Delivery;
using Dapper;
using MassTransit;

namespace Crm.Segmentation.Features.Projections;

// Delivery's outcomes, one row per message: what was sent to a contact (the "received" of a rule),
// suppressed or failed. A message's later outcome replaces an earlier one (a deferred message that is
// sent later); a redelivered event changes nothing.

public sealed class MessagesSentConsumer(TenantDb db) : IConsumer<MessagesSent>
{
    public Task Consume(ConsumeContext<MessagesSent> context) =>
        MessageOutcomes.ApplyAsync(db, context.Message.TenantId, "sent",
            context.Message.Messages.Select(m => new MessageOutcomes.Row(m.MessageId, m.ContactId, m.Channel, m.CampaignId, null, null, m.SentAt)).ToArray(),
            context.CancellationToken);
}

public sealed class MessagesSuppressedConsumer(TenantDb db) : IConsumer<MessagesSuppressed>
{
    public Task Consume(ConsumeContext<MessagesSuppressed> context) =>
        MessageOutcomes.ApplyAsync(db, context.Message.TenantId, "suppressed",
            context.Message.Messages.Select(m => new MessageOutcomes.Row(m.MessageId, m.ContactId, m.Channel, m.CampaignId, m.Reason, m.RuleId, m.SuppressedAt)).ToArray(),
            context.CancellationToken);
}

public sealed class MessagesFailedConsumer(TenantDb db) : IConsumer<MessagesFailed>
{
    public Task Consume(ConsumeContext<MessagesFailed> context) =>
        MessageOutcomes.ApplyAsync(db, context.Message.TenantId, "failed",
            context.Message.Messages.Select(m => new MessageOutcomes.Row(m.MessageId, m.ContactId, m.Channel, m.CampaignId, m.Reason, null, m.FailedAt)).ToArray(),
            context.CancellationToken);
}

public sealed class ChannelUnreachableConsumer(TenantDb db) : IConsumer<ChannelUnreachable>
{
    public async Task Consume(ConsumeContext<ChannelUnreachable> context)
    {
        var e = context.Message;
        var ct = context.CancellationToken;
        await using var scope = await db.BeginAsync(e.TenantId, ct);
        await UnreachableProjection.ApplyAsync(scope, e.TenantId, [new UnreachableProjection.Row(e.ContactId, e.Channel, e.Reason, e.OccurredAt)], ct);
        await scope.CommitAsync(ct);
    }
}

/// <summary>Writes unreachable channels (Delivery's events, and Contacts' export of them), the latest report per channel winning.</summary>
public static class UnreachableProjection
{
    public sealed record Row(Guid ContactId, string Channel, string Reason, DateTimeOffset OccurredAt);

    public static Task ApplyAsync(TenantTransaction scope, string tenant, IReadOnlyList<Row> rows, CancellationToken ct)
    {
        if (rows.Count == 0) return Task.CompletedTask;
        return scope.Connection.ExecuteAsync(new CommandDefinition("""
            WITH c AS (
                SELECT * FROM unnest(@contactIds, @channels, @reasons, @occurredAts) AS c(contact_id, channel, reason, occurred_at)
                WHERE NOT EXISTS (SELECT 1 FROM erased_contacts x WHERE x.tenant_id = @tenant AND x.contact_id = c.contact_id)
            ), contacts_seen AS (
            """ + Dirty.EnsureContacts + """
            ), written AS (
                INSERT INTO unreachable_channels (tenant_id, contact_id, channel, reason, occurred_at)
                SELECT @tenant, contact_id, channel, reason, occurred_at FROM c
                ON CONFLICT (tenant_id, contact_id, channel) DO UPDATE SET reason = excluded.reason, occurred_at = excluded.occurred_at
                WHERE unreachable_channels.occurred_at <= excluded.occurred_at
                RETURNING contact_id
            )
            """ + Dirty.MarkWritten, new
        {
            tenant,
            contactIds = rows.Select(r => r.ContactId).ToArray(),
            channels = rows.Select(r => r.Channel).ToArray(),
            reasons = rows.Select(r => r.Reason).ToArray(),
            occurredAts = rows.Select(r => r.OccurredAt.UtcDateTime).ToArray(),
        }, scope.Transaction, cancellationToken: ct));
    }
}

internal static class MessageOutcomes
{
    public sealed record Row(Guid MessageId, Guid ContactId, string Channel, string? CampaignId, string? Reason, string? RuleId, DateTimeOffset At);

    public static async Task ApplyAsync(TenantDb db, string tenant, string outcome, Row[] rows, CancellationToken ct)
    {
        if (rows.Length == 0) return;
        await using var scope = await db.BeginAsync(tenant, ct);
        await scope.Connection.ExecuteAsync(new CommandDefinition("""
            WITH m AS (
                SELECT * FROM unnest(@messageIds, @contactIds, @channels, @campaignIds, @reasons, @ruleIds, @ats)
                    AS m(message_id, contact_id, channel, campaign_id, reason, rule_id, occurred_at)
                WHERE NOT EXISTS (SELECT 1 FROM erased_contacts x WHERE x.tenant_id = @tenant AND x.contact_id = m.contact_id)
            ), contacts_seen AS (
                INSERT INTO contacts (tenant_id, contact_id, created_at)
                SELECT @tenant, contact_id, min(occurred_at) FROM m GROUP BY contact_id
                ON CONFLICT (tenant_id, contact_id) DO NOTHING
            ), written AS (
                INSERT INTO messages (tenant_id, message_id, contact_id, channel, campaign_id, outcome, reason, rule_id, occurred_at)
                SELECT @tenant, message_id, contact_id, channel, campaign_id, @outcome, reason, rule_id, occurred_at FROM m
                ON CONFLICT (tenant_id, message_id) DO UPDATE SET
                    outcome = excluded.outcome, reason = excluded.reason, rule_id = excluded.rule_id, occurred_at = excluded.occurred_at
                WHERE messages.occurred_at < excluded.occurred_at
                RETURNING contact_id
            )
            """ + Dirty.MarkWritten, new
        {
            tenant, outcome,
            messageIds = rows.Select(r => r.MessageId).ToArray(),
            contactIds = rows.Select(r => r.ContactId).ToArray(),
            channels = rows.Select(r => r.Channel).ToArray(),
            campaignIds = rows.Select(r => r.CampaignId).ToArray(),
            reasons = rows.Select(r => r.Reason).ToArray(),
            ruleIds = rows.Select(r => r.RuleId).ToArray(),
            ats = rows.Select(r => r.At.UtcDateTime).ToArray(),
        }, scope.Transaction, cancellationToken: ct));
        await scope.CommitAsync(ct);
    }
}
