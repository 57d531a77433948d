using System.Security.Cryptography;
using Crm.BuildingBlocks.Data;
using Dapper;

namespace Crm.Campaigns.Features.Schedule;

/// <summary>
/// Creates the runs of scheduled campaigns when they are due. Due work lives in PostgreSQL (campaigns.next_run_at),
/// claimed with FOR UPDATE SKIP LOCKED so replicas share it and none creates a run twice: the run is inserted and
/// next_run_at moved in the same transaction as the claim. A recurring campaign gets its next occurrence after
/// now (occurrences missed while no replica ran collapse into the one run); the others become running. "Now" is
/// the TimeProvider's.
/// </summary>
public sealed class ScheduleWorker(TenantDb db, TimeProvider time, CampaignsOptions options, ILogger<ScheduleWorker> logger) : BackgroundService
{
    private sealed record Due(string TenantId, Guid CampaignId, DateTime NextRunAt, string ScheduleKind, DateTime? SendAt, DateOnly? LocalDate,
        TimeOnly? LocalTime, string PastZonePolicy, string? Cron, string? TimeZone, DateTime? ScheduleEndsAt);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                while (await CreateDueRunsAsync(stoppingToken) > 0) { }
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                logger.LogError(ex, "Creating scheduled runs failed; retrying");
            }
            await Task.Delay(options.RunPollInterval, stoppingToken);
        }
    }

    /// <summary>Claims one batch of due campaigns and creates their runs; returns how many were due.</summary>
    public async Task<int> CreateDueRunsAsync(CancellationToken ct)
    {
        var now = time.GetUtcNow();
        // The one scheduler over every tenant: campaigns whose next run is due, whoever they belong to.
        await using var scope = await db.BeginCrossTenantAsync("campaign scheduler", ct);
        var due = (await scope.Connection.QueryAsync<Due>(new CommandDefinition("""
            SELECT tenant_id, campaign_id, next_run_at, schedule_kind, send_at, local_date, local_time, past_zone_policy, cron, time_zone, schedule_ends_at
            FROM campaigns WHERE status = 'scheduled' AND next_run_at <= @now
            ORDER BY next_run_at LIMIT 100
            FOR UPDATE SKIP LOCKED
            """, new { now = now.UtcDateTime }, scope.Transaction, cancellationToken: ct))).AsList();
        foreach (var d in due)
        {
            var row = new ScheduleEngine.ScheduleRow(d.ScheduleKind, d.SendAt, d.LocalDate, d.LocalTime, d.PastZonePolicy, d.Cron, d.TimeZone, d.ScheduleEndsAt);
            var next = ScheduleEngine.NextRunAt(row, now, after: now);
            await scope.Connection.ExecuteAsync(new CommandDefinition("""
                INSERT INTO campaign_runs (tenant_id, run_id, campaign_id, status, seed, scheduled_for, created_at)
                VALUES (@TenantId, @runId, @CampaignId, 'pending', @seed, @NextRunAt, @now);
                UPDATE campaigns SET last_run_id = @runId, next_run_at = @next, updated_at = @now,
                                     status = CASE WHEN @next::timestamptz IS NULL THEN 'running' ELSE 'scheduled' END
                WHERE tenant_id = @TenantId AND campaign_id = @CampaignId
                """, new
            {
                d.TenantId, d.CampaignId, d.NextRunAt, runId = Guid.NewGuid(), seed = BitConverter.ToInt64(RandomNumberGenerator.GetBytes(8)),
                now = now.UtcDateTime, next = next?.UtcDateTime,
            }, scope.Transaction, cancellationToken: ct));
        }
        await scope.CommitAsync(ct);
        if (due.Count > 0) logger.LogInformation("Created {Count} scheduled campaign run(s)", due.Count);
        return due.Count;
    }
}
