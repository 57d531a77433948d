using Crm.BuildingBlocks.Data;
using Crm.BuildingBlocks.Tenancy;
using Crm.Campaigns.Features.Campaigns;
using Crm.Campaigns.Features.Experiments;
using Crm.Campaigns.Features.Peers;
using Crm.Segmentation.V1;
using Dapper;
using Grpc.Core;
using Npgsql;
using NpgsqlTypes;

namespace Crm.Campaigns.Features.Audience;

/// <summary>
/// A run's audience, taken once: each audience segment and each exclusion segment streamed from
/// Segmentation's ExportSegmentMembers (one consistent snapshot per segment) into temporary tables with
/// binary COPY, then one INSERT … SELECT: the union of the audiences, minus the exclusions, minus contacts
/// this campaign already sent to (a message enqueued, sent, delivered or deferred in an earlier run), minus
/// erased contacts, each with its variant and holdout drawn by hashing (campaign, contact). All in one
/// transaction that ends by taking the run's row: a crash or a cancel before that leaves nothing behind,
/// and a retry starts over. Segmentation is called as Campaigns itself (workload identity, segments.read).
/// </summary>
public sealed class AudienceSnapshot(TenantDb db, PeerServices peers, TimeProvider time, ILogger<AudienceSnapshot> logger)
{
    private const int ExportPage = 10_000;

    public sealed record Run(string Tenant, Guid RunId, Guid CampaignId, long Seed);

    /// <returns>The recipients taken, or null when the run was cancelled meanwhile.</returns>
    public async Task<long?> TakeAsync(Run run, CancellationToken ct)
    {
        var (tenant, runId, campaignId, seed) = run;
        await using var scope = await db.BeginAsync(tenant, ct);
        var campaign = await CampaignEngine.GetRowAsync(scope, tenant, campaignId, ct)
            ?? throw new InvalidOperationException($"Campaign {campaignId} of run {runId} is gone.");
        var variants = (await CampaignEngine.VariantsAsync(scope, tenant, [campaignId], ct)).GetValueOrDefault(campaignId) ?? [];
        await scope.Connection.ExecuteAsync(new CommandDefinition("""
            CREATE TEMP TABLE audience_in (contact_id uuid NOT NULL) ON COMMIT DROP;
            CREATE TEMP TABLE audience_out (contact_id uuid NOT NULL) ON COMMIT DROP;
            """, transaction: scope.Transaction, cancellationToken: ct));
        foreach (var segment in campaign.SegmentIds) await CopySegmentAsync(scope, tenant, segment, "audience_in", ct);
        foreach (var segment in campaign.ExclusionSegmentIds) await CopySegmentAsync(scope, tenant, segment, "audience_out", ct);

        var status = await scope.Connection.ExecuteScalarAsync<string>(new CommandDefinition(
            "SELECT status FROM campaign_runs WHERE tenant_id = @tenant AND run_id = @runId FOR UPDATE", new { tenant, runId }, scope.Transaction, cancellationToken: ct));
        if (status == "cancelled") return null;
        var taken = await scope.Connection.ExecuteAsync(new CommandDefinition($"""
            CREATE INDEX ON audience_out (contact_id);
            ANALYZE audience_in; ANALYZE audience_out;
            INSERT INTO recipients (tenant_id, run_id, contact_id, campaign_id, variant_id, holdout, status)
            SELECT @tenant, @runId, a.contact_id, @campaignId,
                   CASE WHEN a.holdout THEN NULL ELSE {VariantAssignment.VariantSql("a.contact_id")} END,
                   a.holdout, CASE WHEN a.holdout THEN 'holdout' ELSE 'pending' END
            FROM (
                SELECT DISTINCT i.contact_id, {VariantAssignment.HoldoutSql("i.contact_id")} AS holdout
                FROM audience_in i
                WHERE NOT EXISTS (SELECT 1 FROM audience_out o WHERE o.contact_id = i.contact_id)
                  AND NOT EXISTS (SELECT 1 FROM erased_contacts x WHERE x.tenant_id = @tenant AND x.contact_id = i.contact_id)
                  AND NOT EXISTS (SELECT 1 FROM recipients r
                                  WHERE r.tenant_id = @tenant AND r.campaign_id = @campaignId AND r.contact_id = i.contact_id
                                    AND r.status IN ('enqueued', 'sent', 'delivered', 'deferred'))
            ) a
            ON CONFLICT DO NOTHING
            """, new
        {
            tenant, runId, campaignId, seed, holdoutShare = campaign.HoldoutShare,
            variantIds = variants.Select(v => v.VariantId).ToArray(),
            cumulativeWeights = VariantAssignment.Cumulative(variants.Select(v => v.Weight).ToList()),
        }, scope.Transaction, cancellationToken: ct, commandTimeout: 600));
        // A local-time campaign: each recipient's instant of the local time in their zone (or skipped when past).
        await Schedule.LocalSendTimes.ApplyAsync(scope.Connection, scope.Transaction, tenant, runId, time.GetUtcNow(), ct);
        // A run paused while its audience was read keeps the audience and stays paused.
        await scope.Connection.ExecuteAsync(new CommandDefinition("""
            UPDATE campaign_runs SET audience = @taken, started_at = @now,
                status = CASE WHEN status = 'snapshotting' THEN 'sending' ELSE status END
            WHERE tenant_id = @tenant AND run_id = @runId
            """, new { tenant, runId, taken, now = time.GetUtcNow().UtcDateTime }, scope.Transaction, cancellationToken: ct));
        await scope.CommitAsync(ct);
        logger.LogInformation("Run {Run} of {Tenant}: {Count} recipients taken", runId, tenant, taken);
        return taken;
    }

    private async Task CopySegmentAsync(TenantTransaction scope, string tenant, Guid segmentId, string table, CancellationToken ct)
    {
        using var call = peers.Segmentation.ExportSegmentMembers(
            new ExportSegmentMembersRequest { SegmentId = segmentId.ToString(), PageSize = ExportPage },
            peers.Identity.For(tenant, ct, Scope.SegmentsRead));
        await using var writer = await scope.Connection.BeginBinaryImportAsync($"COPY {table} (contact_id) FROM STDIN (FORMAT BINARY)", ct);
        try
        {
            await foreach (var page in call.ResponseStream.ReadAllAsync(ct))
                foreach (var member in page.Members)
                {
                    await writer.StartRowAsync(ct);
                    await writer.WriteAsync(Guid.Parse(member.ContactId), NpgsqlDbType.Uuid, ct);
                }
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.NotFound)
        {
            throw new AudienceUnavailableException($"segment {segmentId} does not exist");
        }
        await writer.CompleteAsync(ct);
    }
}

/// <summary>The audience cannot be taken at all (a segment gone): the run fails with the reason.</summary>
public sealed class AudienceUnavailableException(string message) : Exception(message);

public static class AudienceRegistration
{
    public static IServiceCollection AddAudience(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddSingleton<AudienceSnapshot>();
        return services;
    }
}
