using Crm.BuildingBlocks.Data;
using Crm.Delivery.Features.Engagement;
using Crm.Delivery.Features.Webhooks;
using Dapper;

namespace Crm.Delivery.Channels;

/// <summary>
/// A provider's delivery receipt applied to the message it names by the provider's message id: a sent message
/// becomes delivered or failed, with a step on its timeline. Idempotent, and never moves a message back, so a
/// receipt repeated (or replayed) changes nothing. A delivery is engagement too: recorded once per message (a
/// message.delivered webhook, and an observation Contacts records), however often the provider repeats it.
/// </summary>
public static class ProviderReceipts
{
    /// <param name="next">delivered or failed.</param>
    /// <param name="source">The provider, kept with the observation (twilio, kakao).</param>
    public static async Task ApplyAsync(TenantDb db, string tenant, string providerMessageId, string next, string reason, DateTimeOffset now,
        string source, CancellationToken ct)
    {
        await using var scope = await db.BeginAsync(tenant, ct);
        var (conn, tx) = scope;
        var moved = await conn.QuerySingleOrDefaultAsync<Guid?>("""
            WITH m AS (
                UPDATE messages m SET status = @next, reason = @reason, updated_at = @now
                FROM message_provider_ids p
                WHERE p.tenant_id = @tenant AND p.provider_message_id = @sid
                  AND m.message_id = p.message_id AND m.tenant_id = @tenant AND m.status = 'sent'
                RETURNING m.tenant_id, m.message_id),
            e AS (
                INSERT INTO message_events (tenant_id, message_id, status, reason, at) SELECT tenant_id, message_id, @next, @reason, @now FROM m)
            SELECT message_id FROM m
            """, new { next, reason = ProviderText.Bound(reason), now = now.UtcDateTime, tenant, sid = providerMessageId }, tx);
        if (next == "delivered" && moved is { } id && await EngagementObservations.FindAsync(conn, tx, tenant, id) is { } message)
            await EngagementObservations.RecordAsync(conn, tx, tenant, [new EngagementObservations.Observation(message, "delivered", $"delivered:{id}", now,
                new Dictionary<string, string> { ["source"] = source }, WebhookEvents.MessageDelivered)], now);
        await scope.CommitAsync(ct);
    }
}
