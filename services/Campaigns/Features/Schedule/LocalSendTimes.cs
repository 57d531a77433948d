using Dapper;
using Npgsql;

namespace Crm.Campaigns.Features.Schedule;

/// <summary>
/// A local-time campaign's recipients, once snapshotted, each get the instant their zone reaches the campaign's
/// local date and time (the contact's zone from the projection, the workspace's default when they have none or
/// one PostgreSQL does not know, UTC without settings). The fan-out hands the message to Delivery with that
/// instant (send_at), and Delivery holds it until then. A zone whose time has already passed at snapshot is
/// sent at once (send_now) or skipped (status skipped, reason local_time_passed), as the campaign says; a holdout
/// contact gets the same instant (their conversion window runs from it) and is skipped alike, so both groups
/// lose the same zones.
/// </summary>
public static class LocalSendTimes
{
    public const string PassedReason = "local_time_passed";

    private const string Sql = """
        WITH run AS (
            SELECT c.local_date + c.local_time AS local_at, c.past_zone_policy, coalesce(s.default_time_zone, 'UTC') AS default_zone
            FROM campaign_runs r
            JOIN campaigns c ON c.tenant_id = r.tenant_id AND c.campaign_id = r.campaign_id
            LEFT JOIN campaign_settings s ON s.tenant_id = r.tenant_id
            WHERE r.tenant_id = @tenant AND r.run_id = @runId AND c.schedule_kind = 'local_time'
              AND c.local_date IS NOT NULL AND c.local_time IS NOT NULL
        ), due AS (
            SELECT rc.contact_id,
                   run.local_at AT TIME ZONE coalesce((SELECT z.name FROM pg_timezone_names z WHERE z.name = ct.time_zone), run.default_zone) AS at
            FROM recipients rc CROSS JOIN run
            LEFT JOIN contacts ct ON ct.tenant_id = @tenant AND ct.contact_id = rc.contact_id
            WHERE rc.tenant_id = @tenant AND rc.run_id = @runId AND rc.status IN ('pending', 'holdout')
        )
        UPDATE recipients rc SET
            send_at = CASE WHEN due.at > @now THEN due.at END,
            status = CASE WHEN due.at <= @now AND run.past_zone_policy = 'skip' THEN 'skipped' ELSE rc.status END,
            reason = CASE WHEN due.at <= @now AND run.past_zone_policy = 'skip' THEN @passed ELSE rc.reason END,
            outcome_at = CASE WHEN due.at <= @now AND run.past_zone_policy = 'skip' THEN @now ELSE rc.outcome_at END
        FROM due, run
        WHERE rc.tenant_id = @tenant AND rc.run_id = @runId AND rc.contact_id = due.contact_id
        """;

    /// <summary>Sets each recipient's send instant (or skips them) in the snapshot's transaction; a run of another kind is left alone.</summary>
    public static Task<int> ApplyAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, string tenant, Guid runId, DateTimeOffset now,
        CancellationToken ct) =>
        connection.ExecuteAsync(new CommandDefinition(Sql, new { tenant, runId, now = now.UtcDateTime, passed = PassedReason },
            transaction, cancellationToken: ct));
}
