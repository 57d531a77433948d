using System.Globalization;
using Crm.BuildingBlocks.Messaging;
using Dapper;
using MassTransit;
using Npgsql;

namespace Crm.Campaigns.Features.Experiments;

/// <summary>
/// A/B(n) variants by weight and the holdout, assigned to a run's recipients at snapshot, in one statement.
///
/// Each contact gets two independent uniform numbers in [0, 1) from md5 of ("holdout" | "variant", campaign id,
/// contact id), computed inside the snapshot's INSERT … SELECT (<see cref="HoldoutSql"/>, <see cref="VariantSql"/>): the holdout is the contacts whose first number is below the campaign's holdout share; the
/// others take the variant whose slice of the cumulative weights holds their second number. Hashing the
/// <b>campaign</b> (not the run) is deliberate: a recurring campaign's runs keep each contact in the same group
/// (a holdout contact stays held out, so the comparison is not diluted run after run), while two campaigns
/// draw different holdouts, so no contact is everybody's control (the run's seed is not used). Holdout
/// recipients are recorded as such (status holdout) and the fan-out, which claims pending recipients only,
/// sends them nothing; their conversion window runs from when they would have been sent (send_at, else the
/// run's start).
/// </summary>
public sealed class VariantAssignment
{
    /// <summary>The variant id reports give recipients of a campaign without variants (its template_id is the one variant).</summary>
    public const string SingleVariantId = "default";

    /// <summary>The variant id reports give the holdout group.</summary>
    public const string HoldoutId = "holdout";

    /// <summary>md5 → 52 bits → [0, 1): exact in a double, the same in SQL and in a test that recomputes it.</summary>
    private const string Bucket = "(('x' || left(md5('{0}:' || @campaignId::text || ':' || {1}::text), 13))::bit(52)::bigint / 4503599627370496.0::float8)";

    /// <summary>True for the holdout. Parameters: @campaignId (uuid), @holdoutShare (float8).</summary>
    public static string HoldoutSql(string contactColumn) => string.Format(CultureInfo.InvariantCulture, Bucket, "holdout", contactColumn) + " < @holdoutShare";

    /// <summary>
    /// The variant id, by cumulative weight (null when the campaign has no variants). Parameters: @variantIds (text[]),
    /// @cumulativeWeights (int[], ascending, the last is the total), @campaignId.
    /// </summary>
    public static string VariantSql(string contactColumn) =>
        "(SELECT x.v FROM unnest(@variantIds::text[], @cumulativeWeights::int[]) AS x(v, cw) WHERE x.cw > "
        + string.Format(CultureInfo.InvariantCulture, Bucket, "variant", contactColumn)
        + " * coalesce((@cumulativeWeights::int[])[cardinality(@cumulativeWeights::int[])], 0) ORDER BY x.cw LIMIT 1)";

    /// <summary>Cumulative weights of the variants, in their order.</summary>
    public static int[] Cumulative(IReadOnlyList<int> weights)
    {
        var sums = new int[weights.Count];
        for (int i = 0, total = 0; i < weights.Count; i++) sums[i] = total += weights[i];
        return sums;
    }

    private static readonly string AssignSql = $"""
        UPDATE recipients r SET holdout = d.holdout, variant_id = CASE WHEN d.holdout THEN NULL ELSE d.variant_id END,
                                status = CASE WHEN d.holdout THEN 'holdout' ELSE r.status END
        FROM (SELECT contact_id, {HoldoutSql("contact_id")} AS holdout, {VariantSql("contact_id")} AS variant_id
              FROM recipients WHERE tenant_id = @tenant AND run_id = @runId AND status = 'pending') d
        WHERE r.tenant_id = @tenant AND r.run_id = @runId AND r.contact_id = d.contact_id
        """;

    /// <summary>Assigns every pending recipient already written for the run a variant or the holdout (for a snapshot that writes them first).</summary>
    public static async Task AssignAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, string tenant, Guid runId, CancellationToken ct)
    {
        var campaign = await connection.QuerySingleAsync<(Guid CampaignId, double HoldoutShare)>(new CommandDefinition("""
            SELECT c.campaign_id, c.holdout_share FROM campaign_runs r JOIN campaigns c ON c.tenant_id = r.tenant_id AND c.campaign_id = r.campaign_id
            WHERE r.tenant_id = @tenant AND r.run_id = @runId
            """, new { tenant, runId }, transaction, cancellationToken: ct));
        var variants = (await connection.QueryAsync<(string VariantId, int Weight)>(new CommandDefinition(
            "SELECT variant_id, weight FROM campaign_variants WHERE tenant_id = @tenant AND campaign_id = @CampaignId ORDER BY position, variant_id",
            new { tenant, campaign.CampaignId }, transaction, cancellationToken: ct))).AsList();
        await connection.ExecuteAsync(new CommandDefinition(AssignSql, new
        {
            tenant, runId, campaignId = campaign.CampaignId, holdoutShare = campaign.HoldoutShare,
            variantIds = variants.Select(v => v.VariantId).ToArray(),
            cumulativeWeights = Cumulative(variants.Select(v => v.Weight).ToList()),
        }, transaction, cancellationToken: ct));
    }
}

public static class ExperimentsRegistration
{
    public static IServiceCollection AddExperiments(this IServiceCollection services)
    {
        services.AddSingleton<ConversionAttribution>();
        return services;
    }
}

public static class ExperimentsConsumers
{
    /// <summary>Conversion attribution (orders, named events) and the engagement the report counts.</summary>
    public static void AddExperimentsConsumers(this IBusRegistrationConfigurator bus)
    {
        bus.AddConsumer<OrderGoalConsumer, ProjectionConsumerDefinition<OrderGoalConsumer>>();
        bus.AddConsumer<EngagementGoalConsumer, ProjectionConsumerDefinition<EngagementGoalConsumer>>();
    }
}
