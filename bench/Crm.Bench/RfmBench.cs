extern alias segmentation;

using System.Diagnostics;
using Crm.BuildingBlocks.Data;
using Dapper;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;
using segmentation::Crm.Segmentation.Features.Rfm;

namespace Crm.Bench;

/// <summary>
/// Scoring every contact of the shared generated shop (<see cref="SegmentationData"/>: 1,000,000 contacts,
/// 10,000,000 orders): the service's recompute (RfmEngine, in-process, as the runtime role crm_app under
/// row-level security: the tenant's lock, its table, the one scoring statement that upserts rfm_scores,
/// deletes rows no longer scored and marks changed contacts dirty, its state row, commit) against a
/// hand-written SQL of the same computation (delete the tenant's rows, insert the scores with the default
/// table as a CASE), on the same tables, as the same role, under the same policies, in alternating runs, the
/// better of three each.
///
/// What is measured is the daily recompute the schedule runs (RfmMaxAge): both sides start from the scores
/// stored as of the data's own "now" (dirty_contacts drained as a service would) and recompute them a day
/// later, so recency moves, scores and segments change, and the service really marks the changed contacts
/// dirty. The first computation (every row new, every contact marked dirty) is reported apart on stderr.
/// </summary>
public static class RfmBench
{
    private const int Runs = 3;

    public static async Task RunAsync(BenchEnvironment env)
    {
        var data = await SegmentationData.EnsureAsync(env, "crm_bench_rfm");
        try
        {
            await MeasureAsync(data);
        }
        finally
        {
            NpgsqlConnection.ClearAllPools();
            await env.DropDatabaseAsync(data.Database);
        }
    }

    private static async Task MeasureAsync(SegmentationDataSet data)
    {
        var owner = new NpgsqlConnectionStringBuilder(data.ConnectionString) { CommandTimeout = 0 }.ConnectionString;
        Dapper.DefaultTypeMap.MatchNamesWithUnderscores = true; // as the service's AddPostgres sets it
        await using var app = NpgsqlDataSource.Create(new NpgsqlConnectionStringBuilder(data.AppConnectionString) { CommandTimeout = 0 }.ConnectionString);
        var db = new TenantDb(app);
        var today = new RfmEngine(db, new FixedClock(data.AsOf), new RfmOptions(), NullLogger<RfmEngine>.Instance);
        var nextDay = data.AsOf.AddDays(1);
        var tomorrow = new RfmEngine(db, new FixedClock(nextDay), new RfmOptions(), NullLogger<RfmEngine>.Instance);

        var first = Stopwatch.StartNew();
        var run = await today.RecomputeAsync(data.Tenant, onlyIfStale: false, CancellationToken.None);
        Console.Error.WriteLine(FormattableString.Invariant($"rfm: first computation {first.Elapsed.TotalSeconds:F1} s, {run!.Scored} contacts scored, {run.Changed} marked dirty"));

        var service = double.MaxValue;
        var baseline = double.MaxValue;
        for (var i = 0; i < Runs; i++)
        {
            await ScoresAsOfTodayAsync(today, data.Tenant, owner, first: i == 0);
            var sw = Stopwatch.StartNew();
            run = await tomorrow.RecomputeAsync(data.Tenant, onlyIfStale: false, CancellationToken.None);
            service = Math.Min(service, sw.Elapsed.TotalSeconds);
            Console.Error.WriteLine(FormattableString.Invariant($"rfm: service {sw.Elapsed.TotalSeconds:F2} s ({run!.Scored} scored, {run.Changed} changed)"));
            if (run.Changed == 0) throw new InvalidOperationException("A day later no contact's scores moved: the recompute measured nothing of the marking.");

            await ScoresAsOfTodayAsync(today, data.Tenant, owner, first: false);
            sw.Restart();
            var written = await HandWrittenAsync(db, data.Tenant, nextDay.UtcDateTime);
            baseline = Math.Min(baseline, sw.Elapsed.TotalSeconds);
            Console.Error.WriteLine(FormattableString.Invariant($"rfm: hand-written SQL {sw.Elapsed.TotalSeconds:F2} s"));
            if (written != run.Scored) throw new InvalidOperationException($"The hand-written SQL scored {written} contacts, the service {run.Scored}.");
        }
        Console.WriteLine(FormattableString.Invariant(
            $"bench rfm: {run.Scored / service:F0} contacts/s, {baseline / service:F2}x of hand-written SQL ({run.Scored} contacts rescored a day later, {run.Changed} of them changed, from {data.Orders} orders in {service:F1} s; hand-written {baseline:F1} s; best of {Runs})"));
    }

    /// <summary>
    /// The state each measured side starts from: the scores as of the data's "now" (the first computation left
    /// them so; before later runs the service computes them again), dirty_contacts drained as a service's
    /// refresh would, rfm_scores vacuumed.
    /// </summary>
    private static async Task ScoresAsOfTodayAsync(RfmEngine today, string tenant, string owner, bool first)
    {
        if (!first) await today.RecomputeAsync(tenant, onlyIfStale: false, CancellationToken.None);
        await OwnerAsync(owner, "TRUNCATE dirty_contacts");
        await OwnerAsync(owner, "VACUUM rfm_scores");
    }

    private sealed class FixedClock(DateTimeOffset now) : TimeProvider
    {
        public override DateTimeOffset GetUtcNow() => now;
    }

    /// <summary>The same computation as one would write it by hand: no lookup, no diff, no dirty marks, the table as a CASE.</summary>
    private static async Task<long> HandWrittenAsync(TenantDb db, string tenant, DateTime asOf)
    {
        await using var scope = await db.BeginAsync(tenant);
        await scope.Connection.ExecuteAsync("DELETE FROM rfm_scores WHERE tenant_id = @tenant", new { tenant }, scope.Transaction);
        var written = await scope.Connection.ExecuteAsync("""
            INSERT INTO rfm_scores (tenant_id, contact_id, recency_days, frequency, monetary, r, f, m, segment, as_of, last_order_at)
            WITH c AS (
                SELECT contact_id, count(*) AS frequency, sum(total) AS monetary, max(occurred_at) AS last_order_at,
                       floor(extract(epoch FROM @asOf - max(occurred_at)) / 86400)::int AS days
                FROM orders
                WHERE tenant_id = @tenant AND status = 'completed' AND occurred_at >= @since AND occurred_at < @asOf
                GROUP BY contact_id
            ), b AS (
                SELECT percentile_disc(ARRAY[0.2, 0.4, 0.6, 0.8]) WITHIN GROUP (ORDER BY days) AS r,
                       percentile_disc(ARRAY[0.2, 0.4, 0.6, 0.8]) WITHIN GROUP (ORDER BY frequency) AS f,
                       percentile_disc(ARRAY[0.2, 0.4, 0.6, 0.8]) WITHIN GROUP (ORDER BY monetary) AS m
                FROM c
            ), s AS (
                SELECT c.*,
                       5 - ((c.days > b.r[1])::int + (c.days > b.r[2])::int + (c.days > b.r[3])::int + (c.days > b.r[4])::int) AS rs,
                       1 + (c.frequency > b.f[1])::int + (c.frequency > b.f[2])::int + (c.frequency > b.f[3])::int + (c.frequency > b.f[4])::int AS fs,
                       1 + (c.monetary > b.m[1])::int + (c.monetary > b.m[2])::int + (c.monetary > b.m[3])::int + (c.monetary > b.m[4])::int AS ms
                FROM c CROSS JOIN b
            )
            SELECT @tenant, contact_id, days, frequency, monetary, rs, fs, ms,
                   CASE
                       WHEN rs = 5 AND fs = 5 AND ms = 5 THEN 'Champions'
                       WHEN rs BETWEEN 3 AND 5 AND fs BETWEEN 3 AND 5 AND ms BETWEEN 2 AND 5 THEN 'Potential Loyalist'
                       WHEN rs BETWEEN 2 AND 4 AND fs BETWEEN 2 AND 4 AND ms BETWEEN 2 AND 4 THEN 'Loyal Customers'
                       WHEN rs BETWEEN 3 AND 4 AND fs BETWEEN 1 AND 3 AND ms BETWEEN 3 AND 5 THEN 'Promising'
                       WHEN rs BETWEEN 4 AND 5 AND fs BETWEEN 1 AND 3 AND ms BETWEEN 1 AND 5 THEN 'New Customers'
                       WHEN rs BETWEEN 1 AND 2 AND fs BETWEEN 3 AND 4 AND ms BETWEEN 4 AND 5 THEN 'Can''t Lose Them'
                       WHEN rs BETWEEN 1 AND 2 AND fs BETWEEN 2 AND 5 AND ms BETWEEN 4 AND 5 THEN 'At Risk'
                       WHEN rs BETWEEN 1 AND 3 AND fs BETWEEN 3 AND 5 AND ms BETWEEN 3 AND 5 THEN 'Need Attention'
                       WHEN rs BETWEEN 2 AND 3 AND fs BETWEEN 1 AND 3 AND ms BETWEEN 1 AND 4 THEN 'About To Sleep'
                       WHEN rs = 1 THEN 'Lost'
                       ELSE 'Others'
                   END,
                   @asOf, last_order_at
            FROM s
            """, new { tenant, asOf, since = asOf.AddDays(-365) }, scope.Transaction, commandTimeout: 0);
        await scope.CommitAsync();
        return written;
    }

    /// <summary>As the database's owner (the bench's superuser), outside row-level security.</summary>
    private static async Task OwnerAsync(string owner, string sql)
    {
        await using var conn = new NpgsqlConnection(owner);
        await conn.OpenAsync();
        await conn.ExecuteAsync(sql, commandTimeout: 0);
    }
}
