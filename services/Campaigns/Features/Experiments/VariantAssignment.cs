using MassTransit;

namespace Crm.Campaigns.Features.Experiments;

/// <summary>
/// A/B(n) variants by weight and the holdout, assigned at snapshot by hashing (run seed, contact id): stable
/// for a run, independent between the holdout draw and the variant draw, and computed inside the snapshot's
/// INSERT … SELECT (the audience never leaves PostgreSQL). Owner: campaigns-experiments (conversion
/// attribution and reports build on it); the snapshot (campaigns-core) uses <see cref="HoldoutSql"/> and
/// <see cref="VariantSql"/>.
/// </summary>
public sealed class VariantAssignment
{
    /// <summary>A uniform number in [0, 1) from (seed, contact): hashtextextended's 64 bits, sign bit cleared.</summary>
    private const string Uniform = "((hashtextextended({0}::text, {1}) & 9223372036854775807)::float8 / 9223372036854775808.0)";

    /// <summary>True for the holdout. Parameters: @seed (bigint), @holdoutShare (float8).</summary>
    public static string HoldoutSql(string contactColumn) => string.Format(System.Globalization.CultureInfo.InvariantCulture, Uniform, contactColumn, "@seed") + " < @holdoutShare";

    /// <summary>
    /// The variant id, by cumulative weight (null when the campaign has no variants). Parameters: @variantIds
    /// (text[]), @cumulativeWeights (int[], ascending, the last is the total), @seed.
    /// </summary>
    public static string VariantSql(string contactColumn) =>
        "(SELECT x.v FROM unnest(@variantIds::text[], @cumulativeWeights::int[]) AS x(v, cw) WHERE x.cw > floor("
        + string.Format(System.Globalization.CultureInfo.InvariantCulture, Uniform, contactColumn, "@seed + 1")
        + " * coalesce((@cumulativeWeights::int[])[cardinality(@cumulativeWeights::int[])], 0)) ORDER BY x.cw LIMIT 1)";

    /// <summary>Cumulative weights of the variants, in their order.</summary>
    public static int[] Cumulative(IReadOnlyList<int> weights)
    {
        var sums = new int[weights.Count];
        for (int i = 0, total = 0; i < weights.Count; i++) sums[i] = total += weights[i];
        return sums;
    }
}

public static class ExperimentsRegistration
{
    public static IServiceCollection AddExperiments(this IServiceCollection services)
    {
        services.AddSingleton<VariantAssignment>();
        return services;
    }
}

public static class ExperimentsConsumers
{
    /// <summary>Conversion attribution's consumers (orders, named events) go here.</summary>
    public static void AddExperimentsConsumers(this IBusRegistrationConfigurator bus)
    {
    }
}
