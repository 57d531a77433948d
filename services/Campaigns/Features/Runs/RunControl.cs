using System.Security.Cryptography;
using Crm.BuildingBlocks.Data;
using Crm.BuildingBlocks.Errors;
using Crm.BuildingBlocks.Tenancy;
using Crm.Campaigns.Features.Campaigns;
using Crm.Campaigns.Features.Peers;
using Crm.Campaigns.V1;
using Dapper;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;

namespace Crm.Campaigns.Features.Runs;

/// <summary>
/// Start, pause, resume and cancel; runs and their progress. Every change takes the campaign's row, then
/// its runs' rows, in that order; the fan-out takes only the run's row, per page, so a pause or a cancel
/// waits at most for the page in flight and the next page sees it.
/// </summary>
public sealed class RunControl(TenantDb db, TimeProvider time, PeerServices peers, ILogger<RunControl> logger)
{
    private static readonly string[] Active = ["pending", "snapshotting", "sending", "paused", "waiting"];

    private sealed record RunRow(Guid RunId, Guid CampaignId, string Status, DateTime ScheduledFor, DateTime? StartedAt, DateTime? FinishedAt, string? Error);

    private const string RunColumns = "run_id, campaign_id, status, scheduled_for, started_at, finished_at, error";

    /// <summary>Sends now: a run that snapshots the audience as soon as a worker takes it.</summary>
    public async Task<CampaignRun> StartAsync(string tenant, string campaignId, CancellationToken ct)
    {
        var id = CampaignEngine.ParseId(campaignId, "campaign_id");
        await using var scope = await db.BeginAsync(tenant, ct);
        var campaign = await CampaignEngine.GetRowAsync(scope, tenant, id, ct, forUpdate: true) ?? throw new NotFoundException($"Campaign {id} not found.");
        if (campaign.Status is "running" or "paused") throw new FailedPreconditionException($"Campaign {id} is {campaign.Status}: one run at a time.");
        if (campaign.Status is "cancelled" or "archived") throw new FailedPreconditionException($"Campaign {id} is {campaign.Status}.");
        var runId = await CreateRunAsync(scope, tenant, id, time.GetUtcNow(), "snapshotting", ct);
        await scope.Connection.ExecuteAsync(new CommandDefinition(
            "UPDATE campaigns SET status = 'running', updated_at = @now WHERE tenant_id = @tenant AND campaign_id = @id",
            new { tenant, id, now = time.GetUtcNow().UtcDateTime }, scope.Transaction, cancellationToken: ct));
        var run = await GetRunAsync(scope, tenant, id, runId, ct);
        await scope.CommitAsync(ct);
        return run;
    }

    /// <summary>A run of the campaign (status "pending" with a time in the future for schedules), with a fresh seed.</summary>
    public static async Task<Guid> CreateRunAsync(TenantTransaction scope, string tenant, Guid campaignId, DateTimeOffset scheduledFor, string status, CancellationToken ct)
    {
        var runId = Guid.NewGuid();
        await scope.Connection.ExecuteAsync(new CommandDefinition("""
            INSERT INTO campaign_runs (tenant_id, run_id, campaign_id, status, seed, scheduled_for, created_at)
            VALUES (@tenant, @runId, @campaignId, @status, @seed, @at, @at);
            UPDATE campaigns SET last_run_id = @runId WHERE tenant_id = @tenant AND campaign_id = @campaignId;
            """, new { tenant, runId, campaignId, status, seed = BitConverter.ToInt64(RandomNumberGenerator.GetBytes(8)), at = scheduledFor.UtcDateTime },
            scope.Transaction, cancellationToken: ct));
        return runId;
    }

    /// <summary>Stops the fan-out where it is; what Delivery holds goes on. A run reading its audience finishes reading and waits.</summary>
    public Task<Campaign> PauseAsync(string tenant, string campaignId, CancellationToken ct) =>
        ChangeAsync(tenant, campaignId, ["running"], "paused", """
            UPDATE campaign_runs SET status = 'paused'
            WHERE tenant_id = @tenant AND campaign_id = @id AND status IN ('snapshotting', 'sending')
            """, ct);

    /// <summary>Continues each paused run from its cursor (or its audience, if that was not taken yet).</summary>
    public Task<Campaign> ResumeAsync(string tenant, string campaignId, CancellationToken ct) =>
        ChangeAsync(tenant, campaignId, ["paused"], "running", """
            UPDATE campaign_runs SET status = CASE WHEN started_at IS NULL THEN 'snapshotting' ELSE 'sending' END
            WHERE tenant_id = @tenant AND campaign_id = @id AND status = 'paused'
            """, ct);

    /// <summary>
    /// Stops the fan-out for good (recipients not yet handed over are cancelled), then withdraws what Delivery
    /// still holds with CancelMessages. Delivery records the campaign as cancelled, so a DeliverMessage still on
    /// the bus is suppressed when it arrives. Calling it again repeats the withdrawal (say, after Delivery was down).
    /// </summary>
    public async Task<Campaign> CancelAsync(string tenant, string campaignId, string reason, CancellationToken ct)
    {
        if (reason.Trim().Length > 500) throw new InvalidArgumentException("reason", "at most 500 characters");
        var campaign = await ChangeAsync(tenant, campaignId, ["draft", "scheduled", "running", "paused", "completed", "cancelled"], "cancelled", """
            UPDATE campaign_runs SET status = 'cancelled', cancelled_at = @now, finished_at = coalesce(finished_at, @now)
            WHERE tenant_id = @tenant AND campaign_id = @id AND status IN ('pending', 'snapshotting', 'sending', 'paused', 'waiting');
            UPDATE recipients SET status = 'cancelled', reason = 'campaign cancelled', outcome_at = @now
            WHERE tenant_id = @tenant AND campaign_id = @id AND status = 'pending';
            """, ct);
        var delivery = peers.Delivery ?? throw new RpcException(new Status(StatusCode.FailedPrecondition,
            "The fan-out is stopped, but ConnectionStrings:Delivery is not configured: messages Delivery holds were not withdrawn."));
        var request = new Crm.Delivery.V1.CancelMessagesRequest { CampaignId = campaign.CampaignId, Reason = reason.Trim().Length == 0 ? "campaign cancelled" : reason.Trim() };
        var withdrawn = 0;
        try
        {
            Crm.Delivery.V1.CancelMessagesResponse response;
            do
            {
                response = await delivery.CancelMessagesAsync(request, peers.Identity.For(tenant, ct, Scope.DeliverySend));
                withdrawn += response.Cancelled.Count;
            }
            while (response.More);
        }
        catch (RpcException e)
        {
            logger.LogWarning("Cancel of campaign {Campaign}: Delivery did not withdraw ({Status})", campaign.CampaignId, e.StatusCode);
            throw new RpcException(new Status(StatusCode.Unavailable,
                $"The fan-out is stopped, but Delivery could not withdraw the waiting messages ({e.StatusCode}); call CancelCampaign again."));
        }
        logger.LogInformation("Campaign {Campaign} of {Tenant} cancelled; {Count} waiting messages withdrawn", campaign.CampaignId, tenant, withdrawn);
        return campaign;
    }

    private async Task<Campaign> ChangeAsync(string tenant, string campaignId, string[] from, string to, string runsSql, CancellationToken ct)
    {
        var id = CampaignEngine.ParseId(campaignId, "campaign_id");
        await using var scope = await db.BeginAsync(tenant, ct);
        var campaign = await CampaignEngine.GetRowAsync(scope, tenant, id, ct, forUpdate: true) ?? throw new NotFoundException($"Campaign {id} not found.");
        if (!from.Contains(campaign.Status)) throw new FailedPreconditionException($"Campaign {id} is {campaign.Status}; this needs it {string.Join(" or ", from)}.");
        var now = time.GetUtcNow().UtcDateTime;
        // Runs in id order, so two changes never lock them in opposite orders.
        await scope.Connection.ExecuteAsync(new CommandDefinition(
            "SELECT 1 FROM campaign_runs WHERE tenant_id = @tenant AND campaign_id = @id ORDER BY run_id FOR UPDATE",
            new { tenant, id }, scope.Transaction, cancellationToken: ct));
        await scope.Connection.ExecuteAsync(new CommandDefinition(runsSql + ";\nUPDATE campaigns SET status = @to, updated_at = @now WHERE tenant_id = @tenant AND campaign_id = @id",
            new { tenant, id, to, now }, scope.Transaction, cancellationToken: ct));
        var saved = await CampaignEngine.GetAsync(scope, tenant, id, ct);
        await scope.CommitAsync(ct);
        return saved;
    }

    public async Task<ListCampaignRunsResponse> ListAsync(string tenant, ListCampaignRunsRequest request, CancellationToken ct)
    {
        var id = CampaignEngine.ParseId(request.CampaignId, "campaign_id");
        var size = Math.Min(PageToken.Size(request.PageSize), 100);
        var before = PageToken.Decode(request.PageToken) is { } b ? DateTime.Parse(b, null, System.Globalization.DateTimeStyles.RoundtripKind) : (DateTime?)null;
        await using var scope = await db.BeginAsync(tenant, ct);
        if (await CampaignEngine.GetRowAsync(scope, tenant, id, ct) is null) throw new NotFoundException($"Campaign {id} not found.");
        var rows = (await scope.Connection.QueryAsync<(Guid RunId, DateTime CreatedAt)>(new CommandDefinition("""
            SELECT run_id, created_at FROM campaign_runs WHERE tenant_id = @tenant AND campaign_id = @id AND (@before::timestamptz IS NULL OR created_at < @before)
            ORDER BY created_at DESC LIMIT @limit
            """, new { tenant, id, before, limit = size + 1 }, scope.Transaction, cancellationToken: ct))).AsList();
        var response = new ListCampaignRunsResponse();
        foreach (var r in rows.Take(size)) response.Runs.Add(await GetRunAsync(scope, tenant, id, r.RunId, ct));
        if (rows.Count > size) response.NextPageToken = PageToken.Encode(rows[size - 1].CreatedAt.ToString("O"));
        return response;
    }

    public async Task<CampaignRun> GetAsync(string tenant, GetCampaignRunRequest request, CancellationToken ct)
    {
        var id = CampaignEngine.ParseId(request.CampaignId, "campaign_id");
        var runId = CampaignEngine.ParseId(request.RunId, "run_id");
        await using var scope = await db.BeginAsync(tenant, ct);
        return await GetRunAsync(scope, tenant, id, runId, ct);
    }

    /// <summary>A run with its progress, counted from its recipients' statuses (which Delivery's outcomes set).</summary>
    private static async Task<CampaignRun> GetRunAsync(TenantTransaction scope, string tenant, Guid campaignId, Guid runId, CancellationToken ct)
    {
        var row = await scope.Connection.QuerySingleOrDefaultAsync<RunRow?>(new CommandDefinition(
            $"SELECT {RunColumns} FROM campaign_runs WHERE tenant_id = @tenant AND campaign_id = @campaignId AND run_id = @runId",
            new { tenant, campaignId, runId }, scope.Transaction, cancellationToken: ct)) ?? throw new NotFoundException($"Run {runId} of campaign {campaignId} not found.");
        var counts = (await scope.Connection.QueryAsync<(string Status, string? Reason, string? RuleId, long Count)>(new CommandDefinition("""
            SELECT status, CASE WHEN status = 'suppressed' THEN reason END, CASE WHEN status = 'suppressed' THEN rule_id END, count(*)
            FROM recipients WHERE tenant_id = @tenant AND run_id = @runId GROUP BY 1, 2, 3
            """, new { tenant, runId }, scope.Transaction, cancellationToken: ct))).AsList();
        long Of(params string[] statuses) => counts.Where(c => statuses.Contains(c.Status)).Sum(c => c.Count);
        var progress = new RunProgress
        {
            Audience = counts.Sum(c => c.Count), Holdout = Of("holdout"),
            Enqueued = await scope.Connection.ExecuteScalarAsync<long>(new CommandDefinition(
                "SELECT count(*) FROM recipients WHERE tenant_id = @tenant AND run_id = @runId AND enqueued_at IS NOT NULL",
                new { tenant, runId }, scope.Transaction, cancellationToken: ct)),
            Sent = Of("sent", "delivered"), Delivered = Of("delivered"), Deferred = Of("deferred"), Suppressed = Of("suppressed"),
            Failed = Of("failed"), Cancelled = Of("cancelled"), Skipped = Of("skipped"), Pending = Of("pending"),
        };
        progress.SuppressedBy.AddRange(counts.Where(c => c.Status == "suppressed")
            .Select(c => new RuleCount { Reason = c.Reason ?? "", RuleId = c.RuleId ?? "", Count = c.Count }));
        return new CampaignRun
        {
            RunId = row.RunId.ToString(), CampaignId = row.CampaignId.ToString(), Status = ParseStatus(row.Status),
            ScheduledTime = Ts(row.ScheduledFor), StartTime = row.StartedAt is { } s ? Ts(s) : null, FinishTime = row.FinishedAt is { } f ? Ts(f) : null,
            Error = row.Error ?? "", Progress = progress,
        };
    }

    private static Timestamp Ts(DateTime d) => Timestamp.FromDateTime(DateTime.SpecifyKind(d, DateTimeKind.Utc));

    private static RunStatus ParseStatus(string s) => s switch
    {
        "pending" => RunStatus.Pending, "snapshotting" => RunStatus.Snapshotting, "sending" => RunStatus.Sending, "paused" => RunStatus.Paused,
        "waiting" => RunStatus.Waiting, "finished" => RunStatus.Finished, "cancelled" => RunStatus.Cancelled, "failed" => RunStatus.Failed,
        _ => RunStatus.Unspecified,
    };
}

public static class RunsRegistration
{
    public static IServiceCollection AddRuns(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddSingleton<RunControl>();
        services.AddHostedService<RunWorker>();
        return services;
    }
}
