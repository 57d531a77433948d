using Crm.BuildingBlocks.Data;
using Dapper;

namespace Crm.Delivery.Features.Webhooks;

/// <summary>
/// Keeps <c>webhook_deliveries</c> from growing forever, as <see cref="Crm.BuildingBlocks.Outbox.OutboxRetention"/>
/// does for the outbox: deliveries that ended (delivered, or failed for good) more than Delivery:Webhooks:RetainFor
/// ago (7 days) are deleted every Delivery:Webhooks:CleanupInterval, in batches of Delivery:Webhooks:CleanupBatchSize,
/// each its own short transaction. Pending deliveries (waiting for a retry) are never touched, however old.
/// It goes over every tenant's rows, so each batch is a named cross-tenant transaction.
/// </summary>
public sealed class WebhookRetention(TenantDb db, DeliveryOptions options, TimeProvider clock, ILogger<WebhookRetention> logger) : BackgroundService
{
    private readonly WebhookOptions _options = options.Webhooks;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                var deleted = await CleanAsync(stoppingToken);
                if (deleted > 0) logger.LogInformation("Retention: deleted {Deliveries} finished webhook deliveries", deleted);
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                logger.LogError(ex, "Webhook delivery retention failed; retrying at the next interval");
            }
            await Task.Delay(_options.CleanupInterval, clock, stoppingToken);
        }
    }

    /// <summary>Deletes every finished delivery past retention, batch by batch; returns how many went.</summary>
    public async Task<long> CleanAsync(CancellationToken ct)
    {
        var before = clock.GetUtcNow().UtcDateTime - _options.RetainFor;
        long total = 0;
        int deleted;
        do
        {
            await using var scope = await db.BeginCrossTenantAsync("webhook delivery retention", ct);
            deleted = await scope.Connection.ExecuteAsync(new CommandDefinition("""
                DELETE FROM webhook_deliveries d USING (
                    SELECT tenant_id, delivery_id FROM webhook_deliveries
                    WHERE status <> 'pending' AND last_attempt_at < @before
                    ORDER BY last_attempt_at LIMIT @batch) old
                WHERE d.tenant_id = old.tenant_id AND d.delivery_id = old.delivery_id
                """, new { before, batch = _options.CleanupBatchSize }, scope.Transaction, cancellationToken: ct));
            await scope.CommitAsync(ct);
            total += deleted;
        }
        while (deleted == _options.CleanupBatchSize && !ct.IsCancellationRequested);
        return total;
    }
}
