using Dapper;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace Crm.BuildingBlocks.Outbox;

/// <summary>
/// Keeps the outbox and inbox from growing forever: published outbox rows and processed inbox rows
/// older than Outbox:RetainFor (7 days) are deleted every Outbox:CleanupInterval, in batches of
/// Outbox:CleanupBatchSize, each its own short transaction, so a large backlog never holds locks or a
/// snapshot for long. Unpublished rows are never touched. An inbox row outlives any redelivery the
/// broker makes (minutes), so forgetting it after a week lets no message be handled twice.
/// </summary>
public sealed class OutboxRetention(NpgsqlDataSource dataSource, OutboxOptions options, ILogger<OutboxRetention> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                var (outbox, inbox) = await CleanAsync(stoppingToken);
                if (outbox + inbox > 0) logger.LogInformation("Retention: deleted {Outbox} published outbox rows and {Inbox} inbox rows", outbox, inbox);
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                logger.LogError(ex, "Outbox retention failed; retrying at the next interval");
            }
            await Task.Delay(options.CleanupInterval, stoppingToken);
        }
    }

    /// <summary>Deletes everything past retention, batch by batch; returns how many rows of each table went.</summary>
    public async Task<(long Outbox, long Inbox)> CleanAsync(CancellationToken ct)
    {
        var outbox = await DeleteInBatchesAsync("""
            DELETE FROM outbox_messages WHERE id IN (
                SELECT id FROM outbox_messages WHERE published_at < now() - @retainFor ORDER BY published_at LIMIT @batch)
            """, ct);
        var inbox = await DeleteInBatchesAsync("""
            DELETE FROM inbox_messages WHERE (consumer, message_id) IN (
                SELECT consumer, message_id FROM inbox_messages WHERE processed_at < now() - @retainFor ORDER BY processed_at LIMIT @batch)
            """, ct);
        return (outbox, inbox);
    }

    private async Task<long> DeleteInBatchesAsync(string sql, CancellationToken ct)
    {
        long total = 0;
        int deleted;
        do
        {
            await using var conn = await dataSource.OpenConnectionAsync(ct);
            deleted = await conn.ExecuteAsync(new CommandDefinition(sql, new { retainFor = options.RetainFor, batch = options.CleanupBatchSize }, cancellationToken: ct));
            total += deleted;
        }
        while (deleted == options.CleanupBatchSize && !ct.IsCancellationRequested);
        return total;
    }
}
