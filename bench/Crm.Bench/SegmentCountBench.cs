extern alias segmentation;

using System.Diagnostics;
using Dapper;
using Npgsql;
using Compiler = segmentation::Crm.Segmentation.Features.Segments.RuleCompiler;
using Rule = segmentation::Crm.Segmentation.V1.Rule;

namespace Crm.Bench;

/// <summary>
/// Counting a four-condition segment (bought at least twice in the last 90 days, spent at least 100,000 in the
/// last 365, opted in to email marketing, did not click in the last 30 days) on the shared generated data
/// (1,000,000 contacts, 10,000,000 orders): the predicate Segmentation's rule compiler produces against a
/// hand-written query of the same predicate (one pass over orders, as a DBA would write it). Both run the same
/// way as the service runs its evaluations: as the runtime role crm_app under row-level security, in a
/// transaction with crm.tenant set, warm, the better of three runs each, alternated.
/// </summary>
public static class SegmentCountBench
{
    private const int Runs = 3;

    private const string RuleJson = """
        {"all": [
          {"purchases": {"measure": "PURCHASE_MEASURE_COUNT", "window": {"lastDays": 90}, "range": {"min": 2}}},
          {"purchases": {"measure": "PURCHASE_MEASURE_TOTAL", "window": {"lastDays": 365}, "range": {"min": 100000}}},
          {"reachability": {"channel": "CHANNEL_EMAIL", "purpose": "PURPOSE_MARKETING", "state": "REACHABILITY_OPTED_IN"}},
          {"engagement": {"kind": "ENGAGEMENT_KIND_CLICKED", "window": {"lastDays": 30}, "count": {"max": 0}}}
        ]}
        """;

    private const string HandWritten = """
        SELECT count(*) FROM contacts c
        JOIN (SELECT contact_id FROM orders
              WHERE tenant_id = @tenant AND status = 'completed' AND occurred_at >= @d365
              GROUP BY contact_id
              HAVING count(*) FILTER (WHERE occurred_at >= @d90) >= 2 AND sum(total) >= 100000) b ON b.contact_id = c.contact_id
        WHERE c.tenant_id = @tenant
          AND EXISTS (SELECT 1 FROM consents k WHERE k.tenant_id = @tenant AND k.contact_id = c.contact_id
                      AND k.channel = 'email' AND k.purpose = 'marketing' AND k.status = 'opted_in')
          AND NOT EXISTS (SELECT 1 FROM engagement e WHERE e.tenant_id = @tenant AND e.contact_id = c.contact_id
                          AND e.type = 'clicked' AND e.occurred_at >= @d30)
        """;

    public static async Task RunAsync(BenchEnvironment env)
    {
        var data = await SegmentationData.EnsureAsync(env, "crm_bench_segment_count");
        try
        {
            // The data's own "now": the rule's windows are relative to it, as the service's clock would make them.
            var now = data.AsOf;
            var compiled = Compiler.Compile(Rule.Parser.ParseJson(RuleJson), now);
            var serviceSql = $"SELECT count(*) FROM contacts c WHERE c.tenant_id = @tenant AND ({compiled.Predicate})";
            compiled.Parameters.Add("tenant", data.Tenant);
            var handArgs = new
            {
                tenant = data.Tenant,
                d30 = now.AddDays(-30).UtcDateTime, d90 = now.AddDays(-90).UtcDateTime, d365 = now.AddDays(-365).UtcDateTime,
            };
            await using var conn = new NpgsqlConnection(data.AppConnectionString);
            await conn.OpenAsync();

            long ours = 0, theirs = 0;
            double best = double.MaxValue, baseline = double.MaxValue;
            for (var run = 0; run < Runs; run++)
            {
                var (n1, t1) = await TimeAsync(conn, data.Tenant, serviceSql, compiled.Parameters);
                var (n2, t2) = await TimeAsync(conn, data.Tenant, HandWritten, handArgs);
                (ours, theirs) = (n1, n2);
                best = Math.Min(best, t1);
                baseline = Math.Min(baseline, t2);
            }
            if (ours != theirs) throw new InvalidOperationException($"The compiled rule counts {ours} contacts, the hand-written query {theirs}.");
            Console.WriteLine(FormattableString.Invariant(
                $"bench segment-count: {best:F0} ms, {baseline / best:F2}x of hand-written SQL ({ours} of {data.Contacts} contacts, {data.Orders} orders; 4 conditions; best of {Runs}; hand-written {baseline:F0} ms)"));
        }
        finally
        {
            NpgsqlConnection.ClearAllPools();
            await env.DropDatabaseAsync(data.Database);
        }
    }

    private static async Task<(long Count, double Ms)> TimeAsync(NpgsqlConnection conn, string tenant, string sql, object args)
    {
        await using var tx = await conn.BeginTransactionAsync();
        await conn.ExecuteAsync("SELECT set_config('crm.tenant', @tenant, true)", new { tenant }, tx);
        var sw = Stopwatch.StartNew();
        var count = await conn.ExecuteScalarAsync<long>(new CommandDefinition(sql, args, tx, commandTimeout: 0));
        return (count, sw.Elapsed.TotalMilliseconds);
    }
}
