using Crm.BuildingBlocks.Data;
using Crm.BuildingBlocks.Errors;
using Crm.Campaigns.Features.Experiments;
using Dapper;

namespace Crm.Campaigns.Features.Reports;

/// <summary>
/// GetCampaignReport: per variant and the holdout, from the run's recipients, the outcomes Delivery and the
/// engagement events reported, and the attributed conversions. Rates are per recipient (everyone assigned to
/// the group, sent or not: the holdout comparison is only fair intent-to-treat). Revenue is summed in the
/// currency most conversions came in (orders in other currencies still count as conversions).
/// </summary>
public sealed class ReportEngine(TenantDb db, ConversionAttribution attribution)
{
    public sealed record GroupRow(string VariantId, string Name, bool Holdout, long Recipients, long Sent, long Delivered, long Opened,
        long MachineOpened, long Clicked, long Converted, decimal Revenue)
    {
        public double ConversionRate => Recipients == 0 ? 0 : (double)Converted / Recipients;
        public decimal RevenuePerRecipient => Recipients == 0 ? 0 : Math.Round(Revenue / Recipients, 4);
    }

    public sealed record Report(Guid CampaignId, string CampaignName, Guid? RunId, string? ConversionKind, string? ConversionEvent, int WindowDays,
        string Currency, IReadOnlyList<(GroupRow Group, LiftResult? Lift)> Groups);

    private sealed record CampaignRow(string Name, string? ConversionKind, string? ConversionEvent, int ConversionWindowDays);

    private const string GroupsSql = """
        WITH r AS (
            SELECT run_id, contact_id, variant_id, holdout, status FROM recipients
            WHERE tenant_id = @tenant AND campaign_id = @campaignId AND (@runId::uuid IS NULL OR run_id = @runId)
        ), o AS (
            SELECT o.run_id, o.contact_id,
                   bool_or(o.kind = 'sent') AS sent, bool_or(o.kind = 'delivered') AS delivered, bool_or(o.kind = 'opened') AS opened,
                   bool_or(o.kind = 'machine_opened') AS machine_opened, bool_or(o.kind = 'clicked') AS clicked
            FROM outcomes o WHERE o.tenant_id = @tenant AND o.run_id IN (SELECT DISTINCT run_id FROM r)
            GROUP BY o.run_id, o.contact_id
        ), cv AS (
            SELECT run_id, contact_id, sum(revenue) FILTER (WHERE currency = @currency) AS revenue
            FROM conversions WHERE tenant_id = @tenant AND campaign_id = @campaignId AND (@runId::uuid IS NULL OR run_id = @runId)
            GROUP BY run_id, contact_id
        )
        SELECT CASE WHEN r.holdout THEN 'holdout' ELSE coalesce(r.variant_id, 'default') END AS variant_id, r.holdout,
               count(*) AS recipients,
               count(*) FILTER (WHERE coalesce(o.sent, false) OR r.status IN ('sent', 'delivered')) AS sent,
               count(*) FILTER (WHERE coalesce(o.delivered, false) OR r.status = 'delivered') AS delivered,
               count(*) FILTER (WHERE o.opened) AS opened,
               count(*) FILTER (WHERE o.machine_opened) AS machine_opened,
               count(*) FILTER (WHERE o.clicked) AS clicked,
               count(cv.contact_id) AS converted,
               coalesce(sum(cv.revenue), 0) AS revenue
        FROM r
        LEFT JOIN o ON o.run_id = r.run_id AND o.contact_id = r.contact_id
        LEFT JOIN cv ON cv.run_id = r.run_id AND cv.contact_id = r.contact_id
        GROUP BY 1, 2
        """;

    public async Task<Report> GetAsync(string tenant, Guid campaignId, Guid? runId, CancellationToken ct)
    {
        // Outcomes recorded after the goal event they precede are attributed now.
        await attribution.CatchUpAsync(tenant, campaignId, ct);

        await using var scope = await db.BeginSnapshotAsync(tenant, ct);
        var conn = scope.Connection;
        var campaign = await conn.QuerySingleOrDefaultAsync<CampaignRow>(new CommandDefinition("""
            SELECT name, conversion_kind, conversion_event, conversion_window_days FROM campaigns WHERE tenant_id = @tenant AND campaign_id = @campaignId
            """, new { tenant, campaignId }, scope.Transaction, cancellationToken: ct))
            ?? throw new NotFoundException($"Campaign {campaignId} not found.");
        if (runId is not null && !await conn.ExecuteScalarAsync<bool>(new CommandDefinition(
                "SELECT EXISTS (SELECT 1 FROM campaign_runs WHERE tenant_id = @tenant AND campaign_id = @campaignId AND run_id = @runId)",
                new { tenant, campaignId, runId }, scope.Transaction, cancellationToken: ct)))
            throw new NotFoundException($"Run {runId} of campaign {campaignId} not found.");

        var currency = await conn.ExecuteScalarAsync<string?>(new CommandDefinition("""
            SELECT currency FROM conversions
            WHERE tenant_id = @tenant AND campaign_id = @campaignId AND (@runId::uuid IS NULL OR run_id = @runId) AND currency IS NOT NULL
            GROUP BY currency ORDER BY count(*) DESC, currency LIMIT 1
            """, new { tenant, campaignId, runId }, scope.Transaction, cancellationToken: ct)) ?? "";
        var rows = (await conn.QueryAsync<(string VariantId, bool Holdout, long Recipients, long Sent, long Delivered, long Opened, long MachineOpened,
            long Clicked, long Converted, decimal Revenue)>(new CommandDefinition(GroupsSql,
            new { tenant, campaignId, runId, currency }, scope.Transaction, cancellationToken: ct))).ToDictionary(r => r.VariantId);
        var variants = (await conn.QueryAsync<(string VariantId, string Name)>(new CommandDefinition(
            "SELECT variant_id, name FROM campaign_variants WHERE tenant_id = @tenant AND campaign_id = @campaignId ORDER BY position, variant_id",
            new { tenant, campaignId }, scope.Transaction, cancellationToken: ct))).ToList();
        if (variants.Count == 0) variants.Add((VariantAssignment.SingleVariantId, ""));

        GroupRow Group(string id, string name, bool holdout) => rows.TryGetValue(id, out var r)
            ? new GroupRow(id, name, holdout, r.Recipients, r.Sent, r.Delivered, r.Opened, r.MachineOpened, r.Clicked, r.Converted, r.Revenue)
            : new GroupRow(id, name, holdout, 0, 0, 0, 0, 0, 0, 0, 0);

        var holdoutGroup = Group(VariantAssignment.HoldoutId, "Holdout", true);
        var groups = variants
            .Select(v => Group(v.VariantId, v.Name, false))
            // Recipients of a variant removed since (an earlier run's) still show.
            .Concat(rows.Keys.Where(k => k != VariantAssignment.HoldoutId && variants.All(v => v.VariantId != k)).Order().Select(k => Group(k, "", false)))
            .Select(g => (g, LiftResult.Compute(g.Converted, g.Recipients, holdoutGroup.Converted, holdoutGroup.Recipients)))
            .ToList();
        if (holdoutGroup.Recipients > 0) groups.Add((holdoutGroup, null));
        return new Report(campaignId, campaign.Name, runId, campaign.ConversionKind, campaign.ConversionEvent, campaign.ConversionWindowDays, currency, groups);
    }
}

public static class ReportsRegistration
{
    public static IServiceCollection AddReports(this IServiceCollection services)
    {
        services.AddSingleton<ReportEngine>();
        return services;
    }
}
