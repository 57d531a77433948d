using Crm.BuildingBlocks.Data;
using Crm.Campaigns.Features.Audience;
using Crm.Campaigns.Features.Fanout;
using Dapper;

namespace Crm.Campaigns.Features.Runs;

/// <summary>
/// Moves runs along, on every replica: a due pending run is snapshotted, a sending run fanned out page by
/// page, a waiting run finished once every recipient has an outcome. A worker holds a run for
/// Campaigns:RunLease, renewed with every page; after a crash the lease lapses and any replica (or the
/// restarted one) takes the run over from its durable cursor.
/// </summary>
public sealed class RunWorker(TenantDb db, AudienceSnapshot snapshot, FanoutWorker fanout, TimeProvider time, CampaignsOptions options,
    ILogger<RunWorker> logger) : BackgroundService
{
    private sealed record Claimed(string TenantId, Guid RunId, Guid CampaignId, string Status, long Seed);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            var worked = false;
            try
            {
                foreach (var run in await ClaimAsync(stoppingToken))
                {
                    worked |= run.Status != "waiting";
                    await ProcessAsync(run, stoppingToken);
                }
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                logger.LogError(e, "Campaign run worker failed; retrying");
            }
            if (!worked) await Task.Delay(options.RunPollInterval, time, stoppingToken).ContinueWith(_ => { }, CancellationToken.None);
        }
    }

    private async Task<IReadOnlyList<Claimed>> ClaimAsync(CancellationToken ct)
    {
        var now = time.GetUtcNow();
        await using var scope = await db.BeginCrossTenantAsync("run worker: the due and active runs of every workspace", ct);
        var runs = (await scope.Connection.QueryAsync<Claimed>(new CommandDefinition("""
            UPDATE campaign_runs r SET claimed_until = @until,
                status = CASE WHEN r.status = 'pending' THEN 'snapshotting' ELSE r.status END
            FROM (
                SELECT tenant_id, run_id FROM campaign_runs
                WHERE ((status = 'pending' AND scheduled_for <= @now) OR status IN ('snapshotting', 'sending', 'waiting'))
                  AND (claimed_until IS NULL OR claimed_until < @now)
                ORDER BY status = 'waiting', scheduled_for LIMIT 8
                FOR UPDATE SKIP LOCKED
            ) due
            WHERE r.tenant_id = due.tenant_id AND r.run_id = due.run_id
            RETURNING r.tenant_id, r.run_id, r.campaign_id, r.status, r.seed
            """, new { now = now.UtcDateTime, until = (now + options.RunLease).UtcDateTime }, scope.Transaction, cancellationToken: ct))).AsList();
        await scope.CommitAsync(ct);
        return runs;
    }

    private async Task ProcessAsync(Claimed run, CancellationToken ct)
    {
        var status = run.Status;
        try
        {
            if (status == "snapshotting")
            {
                var taken = await snapshot.TakeAsync(new AudienceSnapshot.Run(run.TenantId, run.RunId, run.CampaignId, run.Seed), ct);
                status = taken is null ? "cancelled" : "sending";
            }
            if (status == "sending")
            {
                var context = await fanout.LoadAsync(run.TenantId, run.RunId, run.CampaignId, ct);
                FanoutWorker.PageResult page;
                do
                {
                    page = await fanout.SendPageAsync(context, ct);
                    await RenewAsync(run, ct);
                }
                while (page == FanoutWorker.PageResult.Sent && !ct.IsCancellationRequested);
                if (page == FanoutWorker.PageResult.Done) status = "waiting";
            }
            if (status == "waiting") await FinishIfCompleteAsync(run, ct);
        }
        catch (AudienceUnavailableException e)
        {
            await FailAsync(run, e.Message, ct);
        }
        finally
        {
            await ReleaseAsync(run);
        }
    }

    /// <summary>Finished only when every recipient has an outcome (or needed none: holdout, skipped).</summary>
    private async Task FinishIfCompleteAsync(Claimed run, CancellationToken ct)
    {
        await using var scope = await db.BeginAsync(run.TenantId, ct);
        var finished = await scope.Connection.ExecuteAsync(new CommandDefinition("""
            WITH done AS (
                UPDATE campaign_runs SET status = 'finished', finished_at = @now
                WHERE tenant_id = @tenant AND run_id = @runId AND status = 'waiting'
                  AND NOT EXISTS (SELECT 1 FROM recipients WHERE tenant_id = @tenant AND run_id = @runId AND status IN ('pending', 'enqueued'))
                RETURNING campaign_id
            )
            UPDATE campaigns c SET status = 'completed', updated_at = @now
            FROM done WHERE c.tenant_id = @tenant AND c.campaign_id = done.campaign_id AND c.status = 'running' AND c.schedule_kind <> 'recurring'
              AND NOT EXISTS (SELECT 1 FROM campaign_runs o WHERE o.tenant_id = @tenant AND o.campaign_id = c.campaign_id AND o.run_id <> @runId
                              AND o.status IN ('pending', 'snapshotting', 'sending', 'paused', 'waiting'))
            """, new { tenant = run.TenantId, runId = run.RunId, now = time.GetUtcNow().UtcDateTime }, scope.Transaction, cancellationToken: ct));
        await scope.CommitAsync(ct);
        if (finished > 0) logger.LogInformation("Run {Run} of {Tenant} finished", run.RunId, run.TenantId);
    }

    private async Task FailAsync(Claimed run, string error, CancellationToken ct)
    {
        logger.LogWarning("Run {Run} of {Tenant} failed: {Error}", run.RunId, run.TenantId, error);
        await using var scope = await db.BeginAsync(run.TenantId, ct);
        await scope.Connection.ExecuteAsync(new CommandDefinition("""
            UPDATE campaign_runs SET status = 'failed', error = @error, finished_at = @now WHERE tenant_id = @tenant AND run_id = @runId AND status = 'snapshotting';
            UPDATE campaigns SET status = 'draft' WHERE tenant_id = @tenant AND campaign_id = @campaignId AND status = 'running';
            """, new { tenant = run.TenantId, runId = run.RunId, campaignId = run.CampaignId, error, now = time.GetUtcNow().UtcDateTime },
            scope.Transaction, cancellationToken: ct));
        await scope.CommitAsync(ct);
    }

    private async Task RenewAsync(Claimed run, CancellationToken ct)
    {
        await using var scope = await db.BeginAsync(run.TenantId, ct);
        await scope.Connection.ExecuteAsync(new CommandDefinition(
            "UPDATE campaign_runs SET claimed_until = @until WHERE tenant_id = @tenant AND run_id = @runId",
            new { tenant = run.TenantId, runId = run.RunId, until = (time.GetUtcNow() + options.RunLease).UtcDateTime }, scope.Transaction, cancellationToken: ct));
        await scope.CommitAsync(ct);
    }

    private async Task ReleaseAsync(Claimed run)
    {
        try
        {
            await using var scope = await db.BeginAsync(run.TenantId);
            await scope.Connection.ExecuteAsync(
                "UPDATE campaign_runs SET claimed_until = NULL WHERE tenant_id = @tenant AND run_id = @runId",
                new { tenant = run.TenantId, runId = run.RunId }, scope.Transaction);
            await scope.CommitAsync();
        }
        catch (Exception e)
        {
            logger.LogDebug(e, "Run {Run}: release failed; the lease lapses by itself", run.RunId);
        }
    }
}
