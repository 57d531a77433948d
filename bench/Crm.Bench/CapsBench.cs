using System.Diagnostics;
using System.Globalization;
using Crm.BuildingBlocks.Data;
using Crm.Delivery;
using Crm.Delivery.Features.Policies;
using Crm.Delivery.Pipeline;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;
using StackExchange.Redis;

namespace Crm.Bench;

/// <summary>
/// Frequency-cap decisions (three rules, one Lua script) through the service's own Redis path,
/// batched per message batch as the pipeline does, against redis-benchmark -c 50 running the
/// same script with the same keys and arguments.
/// </summary>
public static class CapsBench
{
    private const int Decisions = 300_000;
    private const int Batch = 64;

    public static async Task RunAsync(BenchEnvironment env)
    {
        var redisAddress = Environment.GetEnvironmentVariable("CRM_REDIS") ?? throw new InvalidOperationException("CRM_REDIS is not set");
        var db = await env.FreshDatabaseAsync("crm_bench_delivery_caps");
        await using var dataSource = NpgsqlDataSource.Create(db);
        await new Migrator(dataSource, [MigrationSource.BuildingBlocks, new MigrationSource("delivery", typeof(DeliveryModule).Assembly)],
            NullLogger<Migrator>.Instance).MigrateAsync();
        using var redis = await ConnectionMultiplexer.ConnectAsync(redisAddress);
        var caps = new FrequencyCaps(redis, new TenantDb(dataSource), new DeliveryOptions { RedisKeyPrefix = "bench-caps:" });

        var policy = new TenantPolicy("bench", DeliverySettings.Default,
            [
                new CapRule("daily", "all_marketing", "", 1_000_000_000, TimeSpan.FromDays(1)),
                new CapRule("weekly-sms", "channel", "sms", 1_000_000_000, TimeSpan.FromDays(7)),
                new CapRule("monthly-promo", "category", "promotions", 1_000_000_000, TimeSpan.FromDays(30)),
            ], []);
        var now = DateTimeOffset.UtcNow;
        var check = new FrequencyCaps.Check(policy, Guid.Parse("6d0c1b0e-2b1f-4d3a-9a51-5f7e1f3c2a10"), Guid.Parse("0b6a3b5e-8f8e-4c51-a2a7-3c8b7a1e9d42"),
            policy.RulesFor("sms", "marketing", "promotions"), now);
        if (!(await caps.ReserveAsync([check]))[0].Allowed) throw new InvalidOperationException("the bench decision was refused");

        // The project's path: batches of decisions, a few batches in flight.
        var batch = Enumerable.Repeat(check, Batch).ToArray();
        var watch = Stopwatch.StartNew();
        var inFlight = new List<Task>();
        for (var done = 0; done < Decisions; done += Batch)
        {
            inFlight.Add(caps.ReserveAsync(batch));
            if (inFlight.Count == 8)
            {
                await Task.WhenAll(inFlight);
                inFlight.Clear();
            }
        }
        await Task.WhenAll(inFlight);
        var ours = Decisions / watch.Elapsed.TotalSeconds;

        // The baseline: redis-benchmark, 50 connections, the same script, keys and arguments.
        var (script, keys, arguments) = caps.Describe(check);
        var sha = (string)(await redis.GetDatabase().ExecuteAsync("SCRIPT", "LOAD", script))!;
        var host = redisAddress.Split(':');
        var output = await Run("redis-benchmark", ["-h", host[0], "-p", host[1], "-c", "50", "-n", Decisions.ToString(CultureInfo.InvariantCulture), "--csv",
            "EVALSHA", sha, keys.Count.ToString(CultureInfo.InvariantCulture), .. keys, .. arguments]);
        var line = output.Split('\n').Last(l => l.StartsWith("\"EVALSHA", StringComparison.Ordinal));
        var baseline = double.Parse(line.Split(',')[1].Trim('"'), CultureInfo.InvariantCulture);
        Console.WriteLine(FormattableString.Invariant(
            $"bench caps: {ours:F0} decisions/s, {ours / baseline:F2}x of redis-benchmark ({baseline:F0}/s with -c 50; 3 rules per decision, batches of {Batch})"));
    }

    internal static async Task<string> Run(string file, string[] args)
    {
        var psi = new ProcessStartInfo(file, args) { RedirectStandardOutput = true, RedirectStandardError = true };
        using var p = Process.Start(psi)!;
        var stdout = await p.StandardOutput.ReadToEndAsync();
        var stderr = await p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync();
        if (p.ExitCode != 0) throw new InvalidOperationException($"{file} failed: {stderr}");
        return stdout;
    }
}
