using Crm.BuildingBlocks.Messaging;
using Dapper;
using MassTransit;
using Npgsql;

namespace Crm.Campaigns.Features.Experiments;

/// <summary>
/// A/B(n) variants by weight and the holdout, assigned to a run's recipients at snapshot, in one statement.
///
/// Each contact gets two independent uniform numbers in [0, 1) from md5 of ("holdout" | "variant", campaign id,
/// contact id): the holdout is the contacts whose first number is below the campaign's holdout share; the
/// others take the variant whose slice of the cumulative weights holds their second number. Hashing the
/// <b>campaign</b> (not the run) is deliberate: a recurring campaign's runs keep each contact in the same group
/// (a holdout contact stays held out, so the comparison is not diluted run after run), while two campaigns
/// draw different holdouts, so no contact is everybody's control. The snapshot calls this after writing the
/// recipients (and after <see cref="Schedule.LocalSendTimes"/>, whose send_at a holdout contact's assignment
/// time follows): holdout recipients are recorded as such (status holdout, outcome_at = when they would have
/// been sent, from which their conversion window runs) and the fan-out, which claims pending recipients
/// only, sends them nothing.
/// </summary>
public sealed class VariantAssignment
{
    /// <summary>The variant id of a campaign without variants (its template_id is the one variant).</summary>
    public const string SingleVariantId = "default";

    /// <summary>The variant id reports give the holdout group.</summary>
    public const string HoldoutId = "holdout";

    /// <summary>md5 → 52 bits → [0, 1): exact in a double, the same in SQL and in a test that recomputes it.</summary>
    public const string BucketSql = "(('x' || left(md5({0} || ':' || {1}::text || ':' || {2}::text), 13))::bit(52)::bigint / 4503599627370496.0::float8)";

    private static readonly string AssignSql = $$"""
        WITH run AS (
            SELECT c.campaign_id, c.holdout_share
            FROM campaign_runs r JOIN campaigns c ON c.tenant_id = r.tenant_id AND c.campaign_id = r.campaign_id
            WHERE r.tenant_id = @tenant AND r.run_id = @runId
        ), variants AS (
            SELECT variant_id, sum(weight) OVER (ORDER BY position, variant_id) AS upto, sum(weight) OVER () AS total
            FROM campaign_variants WHERE tenant_id = @tenant AND campaign_id = (SELECT campaign_id FROM run)
        ), drawn AS (
            SELECT r.contact_id,
                   {{string.Format(BucketSql, "'holdout'", "run.campaign_id", "r.contact_id")}} < run.holdout_share AS holdout,
                   {{string.Format(BucketSql, "'variant'", "run.campaign_id", "r.contact_id")}} AS u
            FROM recipients r, run
            WHERE r.tenant_id = @tenant AND r.run_id = @runId AND r.status = 'pending'
        )
        UPDATE recipients r SET
            holdout = d.holdout,
            variant_id = CASE WHEN d.holdout THEN NULL ELSE coalesce(
                (SELECT v.variant_id FROM variants v WHERE d.u * v.total < v.upto ORDER BY v.upto LIMIT 1), @single) END,
            status = CASE WHEN d.holdout THEN 'holdout' ELSE r.status END,
            outcome_at = CASE WHEN d.holdout THEN greatest(r.send_at, @now) ELSE r.outcome_at END
        FROM drawn d
        WHERE r.tenant_id = @tenant AND r.run_id = @runId AND r.contact_id = d.contact_id
        """;

    /// <summary>Assigns every pending recipient of the run a variant or the holdout; returns how many were held out.</summary>
    public async Task<long> AssignAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, string tenant, Guid runId, DateTimeOffset now,
        CancellationToken ct)
    {
        await connection.ExecuteAsync(new CommandDefinition(AssignSql,
            new { tenant, runId, now = now.UtcDateTime, single = SingleVariantId }, transaction, cancellationToken: ct));
        return await connection.ExecuteScalarAsync<long>(new CommandDefinition(
            "SELECT count(*) FROM recipients WHERE tenant_id = @tenant AND run_id = @runId AND holdout",
            new { tenant, runId }, transaction, cancellationToken: ct));
    }
}

public static class ExperimentsRegistration
{
    public static IServiceCollection AddExperiments(this IServiceCollection services)
    {
        services.AddSingleton<VariantAssignment>();
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
