using System.Threading.Channels;
using Dapper;
using Npgsql;

namespace Crm.Contacts.Features.Imports;

/// <summary>
/// Refreshes the planner's statistics of a table an import grew substantially (see the function
/// refresh_statistics in migration 0011 for the threshold). It runs after the import has committed
/// and answered, one table at a time in the background, so the caller does not wait for ANALYZE and
/// two imports finishing together do not analyse the same table twice at once.
/// </summary>
public sealed class TableStatistics(NpgsqlDataSource db, ILogger<TableStatistics> logger) : BackgroundService
{
    private readonly Channel<(string Table, long Added)> _grown = Channel.CreateBounded<(string, long)>(
        new BoundedChannelOptions(64) { SingleReader = true, FullMode = BoundedChannelFullMode.DropOldest });

    /// <summary>Records that an import added <paramref name="added"/> rows to <paramref name="table"/> (orders or contacts).</summary>
    public void Grew(string table, long added)
    {
        if (added > 0) _grown.Writer.TryWrite((table, added));
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        await foreach (var (table, added) in _grown.Reader.ReadAllAsync(stoppingToken))
        {
            try
            {
                await using var conn = await db.OpenConnectionAsync(stoppingToken);
                if (await conn.ExecuteScalarAsync<bool>(new CommandDefinition(
                        "SELECT refresh_statistics(@table, @added)", new { table, added }, commandTimeout: 0, cancellationToken: stoppingToken)))
                    logger.LogInformation("Analysed {Table} after an import added {Added} rows", table, added);
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                // Autovacuum will get there in the end; a failed ANALYZE must not stop the next one.
                logger.LogWarning(ex, "Could not analyse {Table} after an import added {Added} rows", table, added);
            }
        }
    }
}
