using Crm.BuildingBlocks.Data;
using Crm.Delivery.Pipeline;
using Dapper;
using Npgsql;

namespace Crm.Delivery.Features.Messages;

/// <summary>
/// Deferred messages wait in PostgreSQL (no delayed-message plugin): when their time comes they are
/// claimed with FOR UPDATE SKIP LOCKED, so replicas share them, and go through the pipeline again.
/// </summary>
public sealed class DeferredMessages(TenantDb db, DeliveryPipeline pipeline, DeliveryOptions options, TimeProvider clock, ILogger<DeferredMessages> logger)
    : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                while (await ReleaseDueAsync(stoppingToken) > 0) { }
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                logger.LogError(ex, "Releasing deferred messages failed; retrying");
            }
            await Task.Delay(options.DeferredPollInterval, clock, stoppingToken);
        }
    }

    /// <summary>Claims one batch of due messages and runs them through the pipeline; returns how many were due.</summary>
    public async Task<int> ReleaseDueAsync(CancellationToken ct)
    {
        var now = clock.GetUtcNow().UtcDateTime;
        List<MessageRow> due;
        // The one poller over every tenant: messages whose wait is over, whoever they belong to.
        await using (var scope = await db.BeginCrossTenantAsync("deferred-message poller", ct))
        {
            due = (await scope.Connection.QueryAsync<MessageRow>($"""
                UPDATE messages SET claimed_until = @until
                WHERE (tenant_id, message_id) IN (
                    SELECT tenant_id, message_id FROM messages
                    WHERE status = 'deferred' AND not_before <= @now AND (claimed_until IS NULL OR claimed_until < @now)
                    ORDER BY not_before
                    LIMIT 200
                    FOR UPDATE SKIP LOCKED)
                RETURNING {MessageRow.Columns}
                """, new { now, until = now + pipeline.Lease })).AsList();
            await scope.CommitAsync(ct);
        }
        await pipeline.ProcessClaimedAsync(due);
        return due.Count;
    }
}
