using Crm.BuildingBlocks.Data;
using Crm.Delivery.Pipeline;
using Dapper;
using Npgsql;

namespace Crm.Delivery.Features.Messages;

/// <summary>
/// Messages whose worker stopped (killed, crashed, its node gone) while holding them: their claim ran
/// out with the message still accepted or sending. An accepted one never reached a provider, so it runs
/// through the pipeline again. A sending one may be at the provider or not — nobody can tell — so it is
/// never sent again: it fails as unconfirmed, with MessagesFailed, and the caller decides (at most
/// once, reported).
/// </summary>
/// <remarks>
/// A stranded message was accepted recently (a worker claims it as it inserts it) or released from
/// deferred (its not_before stays set while it is sending), so a periodic look reads the message ids of
/// the last few leases (UUIDv7: the primary key is in time order) and the due index, not the table. The
/// first look after start-up reads everything once, for what an outage longer than that left behind.
/// </remarks>
public sealed class StrandedMessages(TenantDb db, DeliveryPipeline pipeline, DeliveryOptions options, TimeProvider clock, Channels.ChannelRegistry channels,
    ILogger<StrandedMessages> logger) : BackgroundService
{
    public const string UnconfirmedReason =
        "unconfirmed: the worker stopped while the message was being sent; it may or may not have reached the provider, and is not sent again";

    private const int BatchSize = 500;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var everything = true;
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                while (await TakeUpAsync(everything, stoppingToken) == BatchSize) { }
                everything = false;
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                logger.LogError(ex, "Taking up stranded messages failed; retrying");
            }
            await Task.Delay(options.StrandedCheckInterval, clock, stoppingToken);
        }
    }

    /// <summary>Claims one batch of stranded messages: reruns the accepted, reports the sending; returns how many.</summary>
    public async Task<int> TakeUpAsync(bool everything, CancellationToken ct)
    {
        var now = clock.GetUtcNow();
        var since = everything ? Guid.Empty : FirstIdAt(now - 10 * pipeline.Lease - 3 * options.StrandedCheckInterval);
        List<MessageRow> stranded;
        // Cross-tenant, like the deferred poller: whatever a stopped worker left, whoever it belongs to.
        await using (var scope = await db.BeginCrossTenantAsync("stranded-message sweep", ct))
        {
            stranded = (await scope.Connection.QueryAsync<MessageRow>($"""
                UPDATE messages SET claimed_until = @until
                WHERE message_id IN (
                    SELECT message_id FROM messages
                    WHERE (message_id >= @since OR not_before <= @now)
                      AND status IN ('accepted', 'sending') AND claimed_until < @now
                    LIMIT @limit
                    FOR UPDATE SKIP LOCKED)
                RETURNING {MessageRow.Columns}
                """, new { since, now = now.UtcDateTime, until = (now + pipeline.Lease).UtcDateTime, limit = BatchSize })).AsList();
            await scope.CommitAsync(ct);
        }
        if (stranded.Count == 0) return 0;

        var sending = stranded.Where(m => m.Status == "sending").ToList();
        logger.LogWarning("Took up {Accepted} accepted and {Sending} sending messages whose worker stopped",
            stranded.Count - sending.Count, sending.Count);
        foreach (var tenant in sending.GroupBy(m => m.TenantId))
        {
            var outcomes = new Outcomes(tenant.Key, clock, channels);
            foreach (var m in tenant) outcomes.Unconfirmed(m, UnconfirmedReason);
            await outcomes.WriteAsync(db, ct);
        }
        await pipeline.ProcessClaimedAsync([.. stranded.Where(m => m.Status == "accepted")]);
        return stranded.Count;
    }

    /// <summary>The smallest UUIDv7 of a moment: its first 48 bits are the Unix time in milliseconds.</summary>
    private static Guid FirstIdAt(DateTimeOffset at)
    {
        var bytes = new byte[16];
        var ms = at.ToUnixTimeMilliseconds();
        for (var i = 0; i < 6; i++) bytes[i] = (byte)(ms >> (8 * (5 - i)));
        return new Guid(bytes, bigEndian: true);
    }
}
