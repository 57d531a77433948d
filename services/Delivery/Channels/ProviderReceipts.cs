using Crm.BuildingBlocks.Data;
using Dapper;

namespace Crm.Delivery.Channels;

/// <summary>
/// A provider's delivery receipt applied to the message it names by the provider's message id: a sent message
/// becomes delivered or failed, with a step on its timeline. Idempotent, and never moves a message back, so a
/// receipt repeated (or replayed) changes nothing.
/// </summary>
public static class ProviderReceipts
{
    /// <param name="next">delivered or failed.</param>
    public static async Task ApplyAsync(TenantDb db, string tenant, string providerMessageId, string next, string reason, DateTimeOffset now, CancellationToken ct)
    {
        await using var scope = await db.BeginAsync(tenant, ct);
        await scope.Connection.ExecuteAsync("""
            WITH m AS (
                UPDATE messages m SET status = @next, reason = @reason, updated_at = @now
                FROM message_provider_ids p
                WHERE p.tenant_id = @tenant AND p.provider_message_id = @sid
                  AND m.message_id = p.message_id AND m.tenant_id = @tenant AND m.status = 'sent'
                RETURNING m.tenant_id, m.message_id)
            INSERT INTO message_events (tenant_id, message_id, status, reason, at) SELECT tenant_id, message_id, @next, @reason, @now FROM m
            """, new { next, reason = ProviderText.Bound(reason), now = now.UtcDateTime, tenant, sid = providerMessageId });
        await scope.CommitAsync(ct);
    }
}
