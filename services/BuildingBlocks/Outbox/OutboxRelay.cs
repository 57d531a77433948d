using System.Collections.Concurrent;
using System.Text.Json;
using Dapper;
using MassTransit;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace Crm.BuildingBlocks.Outbox;

public sealed class OutboxOptions
{
    public const string Section = "Outbox";

    /// <summary>Off only in tests that need to stop between commit and publish.</summary>
    public bool RelayEnabled { get; set; } = true;
    public int BatchSize { get; set; } = 500;

    /// <summary>The relay wakes on NOTIFY; this is only the fallback when a notification is missed.</summary>
    public TimeSpan PollInterval { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// A batch whose publishes are not all confirmed within this is given up and published again: a broker
    /// that died holding the confirms never sends them, and the relay would wait for them forever.
    /// </summary>
    public TimeSpan PublishTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>How long published outbox rows and processed inbox rows are kept (<see cref="OutboxRetention"/>).</summary>
    public TimeSpan RetainFor { get; set; } = TimeSpan.FromDays(7);
    public TimeSpan CleanupInterval { get; set; } = TimeSpan.FromMinutes(10);
    public int CleanupBatchSize { get; set; } = 1000;

    /// <summary>
    /// Test-only: where the relay stops with its first batch, holding it claimed, until the process ends — so a
    /// fault test can kill it at exactly that point (see <see cref="OutboxPause"/>). Off in production.
    /// </summary>
    public OutboxPause PauseAt { get; set; } = OutboxPause.None;
}

/// <summary>The points in a batch's life where a fault test can stop the relay (<see cref="OutboxOptions.PauseAt"/>).</summary>
public enum OutboxPause
{
    None,

    /// <summary>The batch is read and locked, nothing of it published or marked: the moment between commit and publish.</summary>
    AfterClaim,

    /// <summary>Every message of the batch published and confirmed by the broker, none marked published yet.</summary>
    AfterPublish,
}

/// <summary>
/// Publishes committed outbox rows to RabbitMQ and marks them published. It sleeps on
/// LISTEN outbox_messages (a trigger notifies when rows commit) and polls only as a fallback. A batch is claimed with
/// FOR UPDATE SKIP LOCKED (so replicas share the work), published with publisher confirms, and
/// stamped in the same transaction: a crash before the commit republishes the batch
/// (at-least-once; consumers are idempotent by message id), a crash never loses it.
/// </summary>
public sealed class OutboxRelay(NpgsqlDataSource dataSource, IBus bus, OutboxOptions options, ILogger<OutboxRelay> logger)
    : BackgroundService
{
    private static readonly ConcurrentDictionary<string, Type?> Types = new();

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (!options.RelayEnabled)
        {
            logger.LogWarning("Outbox relay is disabled by configuration");
            return;
        }
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await using var listener = await dataSource.OpenConnectionAsync(stoppingToken);
                await using (var listen = new NpgsqlCommand("LISTEN outbox_messages", listener))
                    await listen.ExecuteNonQueryAsync(stoppingToken);
                while (!stoppingToken.IsCancellationRequested)
                {
                    // Drain, then sleep until a commit notifies (or the fallback interval passes).
                    while (await PublishBatchAsync(stoppingToken) == options.BatchSize) { }
                    await listener.WaitAsync(options.PollInterval, stoppingToken);
                }
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                logger.LogError(ex, "Outbox relay failed; retrying");
                await Task.Delay(TimeSpan.FromSeconds(1), stoppingToken);
            }
        }
    }

    public async Task<int> PublishBatchAsync(CancellationToken ct)
    {
        await using var conn = await dataSource.OpenConnectionAsync(ct);
        await using var tx = await conn.BeginTransactionAsync(ct);
        var rows = (await conn.QueryAsync<OutboxRow>(new CommandDefinition("""
            SELECT id, message_id AS MessageId, message_type AS MessageType, payload AS Payload
            FROM outbox_messages
            WHERE published_at IS NULL
            ORDER BY id
            LIMIT @BatchSize
            FOR UPDATE SKIP LOCKED
            """, new { options.BatchSize }, tx, cancellationToken: ct))).AsList();
        if (rows.Count == 0) return 0;
        if (options.PauseAt == OutboxPause.AfterClaim) await PauseAsync(OutboxPause.AfterClaim, rows.Count, ct);

        var publishes = new List<Task>(rows.Count);
        foreach (var row in rows)
        {
            var type = Types.GetOrAdd(row.MessageType, static name => Type.GetType(name));
            if (type is null)
            {
                // A row this build cannot read stays unpublished (and visible) rather than being dropped.
                logger.LogError("Outbox row {Id} has unknown message type {Type}", row.Id, row.MessageType);
                continue;
            }
            var message = JsonSerializer.Deserialize(row.Payload, type, Outbox.Json)!;
            var messageId = row.MessageId;
            publishes.Add(bus.Publish(message, type, ctx => ctx.MessageId = messageId, ct));
        }
        // Given up (the rows stay unpublished, the transaction rolls back) rather than waited for forever.
        await Task.WhenAll(publishes).WaitAsync(options.PublishTimeout, ct);
        if (options.PauseAt == OutboxPause.AfterPublish) await PauseAsync(OutboxPause.AfterPublish, rows.Count, ct);

        await conn.ExecuteAsync(new CommandDefinition(
            "UPDATE outbox_messages SET published_at = now() WHERE id = ANY(@ids)",
            new { ids = rows.Select(r => r.Id).ToArray() }, tx, cancellationToken: ct));
        await tx.CommitAsync(ct);
        return rows.Count;
    }

    /// <summary>
    /// Stops here, inside the batch's transaction, until the service stops (the transaction then rolls back).
    /// The log line is what a fault test waits for before it kills the process.
    /// </summary>
    private async Task PauseAsync(OutboxPause point, int count, CancellationToken ct)
    {
        logger.LogWarning("Outbox relay paused {Point} with {Count} messages (Outbox:PauseAt)", point, count);
        await Task.Delay(Timeout.Infinite, ct);
    }

    private sealed record OutboxRow(long Id, Guid MessageId, string MessageType, string Payload);
}
