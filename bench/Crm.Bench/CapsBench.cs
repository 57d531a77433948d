using System.Diagnostics;
using System.Globalization;
using Crm.BuildingBlocks.Data;
using Crm.Delivery;
using Crm.Delivery.Features.Policies;
using Crm.Delivery.Pipeline;
using Dapper;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;
using StackExchange.Redis;

namespace Crm.Bench;

/// <summary>
/// Frequency-cap decisions for 100,000 contacts under three binding rules (1 a day, 3 a week, 5 a
/// month), through Delivery's own <see cref="FrequencyCaps"/> (its script, its keys), against
/// redis-benchmark running the same script over the same keys.
///
/// The contacts have a month of history in the send ledger (0–6 marketing messages each at random
/// times), loaded into Redis by the production path before measuring, so every measured decision
/// runs the whole script on a loaded contact: some are allowed, some refused by each rule. Each run
/// starts from a copy of that loaded state, so all runs decide the same thing.
///
/// Both sides: contacts drawn uniformly at random (with replacement), a fresh message id per
/// decision, the same `now`, 8 × 64 decisions in flight (ours: 8 concurrent batches of 64 through
/// ReserveAsync, which pipelines a batch on the multiplexer's one connection; redis-benchmark:
/// -c 8 -P 64), timed from the first request to the last reply, best of three runs each.
/// One difference we cannot remove: redis-benchmark draws every __rand_int__ of a command on its own,
/// so its three keys name three random contacts rather than one; the keys and the work per key are
/// the same, the allowed share differs a little and is printed for both.
/// </summary>
public static class CapsBench
{
    private const int Contacts = 100_000;
    private const int Decisions = 200_000;
    private const int Batch = 64;
    private const int InFlight = 8;
    private const int Runs = 3;
    private const string Tenant = "bench";
    private const string KeyPrefix = "bench-caps:";

    public static async Task RunAsync(BenchEnvironment env)
    {
        var redisAddress = Environment.GetEnvironmentVariable("CRM_REDIS") ?? throw new InvalidOperationException("CRM_REDIS is not set");
        var db = await env.FreshDatabaseAsync("crm_bench_delivery_caps");
        await using var dataSource = NpgsqlDataSource.Create(db);
        await new Migrator(dataSource, [MigrationSource.BuildingBlocks, new MigrationSource("delivery", typeof(DeliveryModule).Assembly)],
            NullLogger<Migrator>.Instance).MigrateAsync();
        using var redis = await ConnectionMultiplexer.ConnectAsync(redisAddress);
        var server = redis.GetServer(redis.GetEndPoints()[0]);
        await DeleteKeysAsync(redis, server);
        try
        {
            await MeasureAsync(redis, dataSource, redisAddress);
        }
        finally
        {
            await DeleteKeysAsync(redis, server);
            await env.DropDatabaseAsync("crm_bench_delivery_caps");
        }
    }

    private static async Task MeasureAsync(ConnectionMultiplexer redis, NpgsqlDataSource dataSource, string redisAddress)
    {
        var server = redis.GetServer(redis.GetEndPoints()[0]);
        var policy = new TenantPolicy(Tenant, DeliverySettings.Default,
            [
                new CapRule("daily", "all_marketing", "", 1, TimeSpan.FromDays(1)),
                new CapRule("weekly-sms", "channel", "sms", 3, TimeSpan.FromDays(7)),
                new CapRule("monthly-promo", "category", "promotions", 5, TimeSpan.FromDays(30)),
            ], []);
        var rules = policy.RulesFor("sms", "marketing", "promotions");
        if (rules.Count != 3) throw new InvalidOperationException($"expected 3 rules to apply, got {rules.Count}");
        var now = DateTimeOffset.FromUnixTimeMilliseconds(DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());
        var contacts = Enumerable.Range(0, Contacts).Select(ContactId).ToArray();

        // The ledger: a month of sent marketing SMS per contact, then every contact's sets loaded into
        // Redis the way the pipeline loads them (a reservation taken and given back).
        await SeedLedgerAsync(dataSource, now);
        var seed = Caps(redis, dataSource, "seed:");
        var watch = Stopwatch.StartNew();
        foreach (var chunk in contacts.Chunk(1_000))
        {
            var checks = chunk.Select(c => new FrequencyCaps.Check(policy, c, Guid.NewGuid(), rules, now)).ToList();
            var results = await seed.ReserveAsync(checks);
            await Task.WhenAll(checks.Where((_, i) => results[i].Allowed).Select(c => seed.ReleaseAsync(policy, c.ContactId, c.MessageId, rules)));
        }
        Console.Error.WriteLine(FormattableString.Invariant($"caps: {Contacts} contacts loaded from the ledger in {watch.Elapsed.TotalSeconds:F1} s"));
        var seedKeys = contacts.Select(c => Keys(seed, policy, c, rules, now)).ToArray();
        var seedMembers = await CountMembersAsync(redis, seedKeys);

        // The stream: the same for every run of ours; redis-benchmark draws its own from the same spread.
        var random = new Random(20_251_120);
        var picks = Enumerable.Range(0, Decisions).Select(_ => random.Next(Contacts)).ToArray();

        var host = redisAddress.Split(':');
        double ours = 0, baseline = 0, oursAllowed = 0, baselineAllowed = 0;
        for (var run = 0; run < Runs; run++)
        {
            // Ours: FrequencyCaps.ReserveAsync, 8 batches of 64 in flight.
            var prefix = $"run{run}o:";
            var caps = Caps(redis, dataSource, prefix);
            await CopyAsync(redis, seedKeys, contacts.Select(c => Keys(caps, policy, c, rules, now)).ToArray());
            var checks = picks.Select(p => new FrequencyCaps.Check(policy, contacts[p], Guid.NewGuid(), rules, now)).ToArray();
            var batches = checks.Chunk(Batch).ToArray();
            var allowed = 0;
            var refusedBy = new System.Collections.Concurrent.ConcurrentDictionary<string, int>();
            var next = -1;
            watch.Restart();
            await Task.WhenAll(Enumerable.Range(0, InFlight).Select(async _ =>
            {
                for (var b = Interlocked.Increment(ref next); b < batches.Length; b = Interlocked.Increment(ref next))
                {
                    var results = await caps.ReserveAsync(batches[b]);
                    Interlocked.Add(ref allowed, results.Count(r => r.Allowed));
                    foreach (var r in results.Where(r => !r.Allowed)) refusedBy.AddOrUpdate(r.DeniedBy!.RuleId, 1, (_, n) => n + 1);
                }
            }));
            var rate = Decisions / watch.Elapsed.TotalSeconds;
            await DeleteKeysAsync(redis, server, KeyPrefix + prefix);
            ours = Math.Max(ours, rate);
            oursAllowed = 100.0 * allowed / Decisions;
            Console.Error.WriteLine(FormattableString.Invariant($"caps run {run + 1}: FrequencyCaps {rate:F0} decisions/s, {allowed} allowed, {Decisions - allowed} refused ({string.Join(", ", refusedBy.OrderBy(r => r.Key).Select(r => $"{r.Key} {r.Value}"))})"));

            // redis-benchmark: the same script by SHA, keys and arguments with the contact and the message id drawn per command.
            prefix = $"run{run}b:";
            caps = Caps(redis, dataSource, prefix);
            var runKeys = contacts.Select(c => Keys(caps, policy, c, rules, now)).ToArray();
            await CopyAsync(redis, seedKeys, runKeys);
            var (script, keys, arguments) = caps.Describe(new FrequencyCaps.Check(policy, contacts[0], Guid.Empty, rules, now));
            var sha = (string)(await redis.GetDatabase().ExecuteAsync("SCRIPT", "LOAD", script))!;
            var contactTemplate = contacts[0].ToString("N")[..20] + "__rand_int__";
            var memberTemplate = $"{run:D2}{new string('f', 18)}__rand_int__";
            string[] command = ["EVALSHA", sha, keys.Count.ToString(CultureInfo.InvariantCulture),
                .. keys.Select(k => k.Replace(contacts[0].ToString("N"), contactTemplate, StringComparison.Ordinal)),
                arguments[0], memberTemplate, .. arguments.Skip(2)];
            var output = await Run("redis-benchmark", ["-h", host[0], "-p", host[1], "-c", $"{InFlight}", "-P", $"{Batch}",
                "-r", $"{Contacts}", "-n", $"{Decisions}", "--csv", .. command]);
            var line = output.Split('\n').Last(l => l.StartsWith("\"EVALSHA", StringComparison.Ordinal));
            rate = double.Parse(line.Split(',')[1].Trim('"'), CultureInfo.InvariantCulture);
            // An allowed decision adds one member to each of its keys.
            var added = (await CountMembersAsync(redis, runKeys) - seedMembers) / rules.Count;
            await DeleteKeysAsync(redis, server, KeyPrefix + prefix);
            baseline = Math.Max(baseline, rate);
            baselineAllowed = 100.0 * added / Decisions;
            Console.Error.WriteLine(FormattableString.Invariant($"caps run {run + 1}: redis-benchmark {rate:F0} decisions/s, {added} allowed, {Decisions - added} refused"));
        }
        foreach (var (side, share) in new[] { ("FrequencyCaps", oursAllowed), ("redis-benchmark", baselineAllowed) })
            if (share is <= 0 or >= 100) throw new InvalidOperationException($"{side} allowed {share:F0}% of the decisions: the caps did not bind both ways");

        Console.WriteLine(FormattableString.Invariant(
            $"bench caps: {ours:F0} decisions/s, {ours / baseline:F2}x of redis-benchmark ({Contacts} contacts, 3 rules, {oursAllowed:F0}% allowed, {Decisions} decisions, best of {Runs}; redis-benchmark {baseline:F0}/s, {baselineAllowed:F0}% allowed, -c {InFlight} -P {Batch})"));
    }

    private static FrequencyCaps Caps(IConnectionMultiplexer redis, NpgsqlDataSource db, string prefix) =>
        new(redis, new TenantDb(db), new DeliveryOptions { RedisKeyPrefix = KeyPrefix + prefix });

    /// <summary>
    /// Contact ids whose last 12 hex digits are the contact's number in decimal, so that redis-benchmark's
    /// __rand_int__ (12 decimal digits) in place of them names the same contacts' keys.
    /// </summary>
    private static Guid ContactId(int n) => Guid.ParseExact(n.ToString("D32", CultureInfo.InvariantCulture), "N");

    private static IReadOnlyList<string> Keys(FrequencyCaps caps, TenantPolicy policy, Guid contact, IReadOnlyList<CapRule> rules, DateTimeOffset now) =>
        caps.Describe(new FrequencyCaps.Check(policy, contact, Guid.Empty, rules, now)).Keys;

    /// <summary>0–6 sent marketing SMS (promotions) per contact over the 30 days before now.</summary>
    private static async Task SeedLedgerAsync(NpgsqlDataSource dataSource, DateTimeOffset now)
    {
        await using var conn = await dataSource.OpenConnectionAsync();
        await conn.ExecuteAsync("SELECT setseed(0.25)");
        await conn.ExecuteAsync("""
            INSERT INTO messages (tenant_id, message_id, idempotency_key, contact_id, channel, purpose, category, status,
                                  cap_reserved_at, sent_at, created_at, updated_at)
            SELECT @tenant, gen_random_uuid(), 'history-' || c || '-' || j, lpad(c::text, 32, '0')::uuid, 'sms', 'marketing', 'promotions', 'sent',
                   h.at, h.at, h.at, h.at
            FROM generate_series(0, @contacts - 1) c,
                 LATERAL (SELECT j, @now - random() * interval '30 days' AS at FROM generate_series(1, c * 7919 % 7) j) h
            """, new { tenant = Tenant, contacts = Contacts, now = now.UtcDateTime }, commandTimeout: 300);
        await conn.ExecuteAsync("ANALYZE messages");
    }

    private static async Task CopyAsync(IConnectionMultiplexer redis, IReadOnlyList<IReadOnlyList<string>> from, IReadOnlyList<IReadOnlyList<string>> to)
    {
        var database = redis.GetDatabase();
        for (var start = 0; start < from.Count; start += 5_000)
        {
            var copies = new List<Task<bool>>();
            for (var i = start; i < Math.Min(from.Count, start + 5_000); i++)
                for (var k = 0; k < from[i].Count; k++)
                    copies.Add(database.KeyCopyAsync(from[i][k], to[i][k]));
            if ((await Task.WhenAll(copies)).Any(copied => !copied)) throw new InvalidOperationException("a loaded cap set was missing");
        }
    }

    private static async Task<long> CountMembersAsync(IConnectionMultiplexer redis, IReadOnlyList<IReadOnlyList<string>> keys)
    {
        var database = redis.GetDatabase();
        long total = 0;
        foreach (var chunk in keys.SelectMany(k => k).Chunk(10_000))
            total += (await Task.WhenAll(chunk.Select(k => database.SortedSetLengthAsync(k)))).Sum();
        return total;
    }

    /// <summary>Every key this bench wrote (its own prefix), so nothing is left behind for the next benchmark.</summary>
    private static async Task DeleteKeysAsync(IConnectionMultiplexer redis, IServer server, string prefix = KeyPrefix)
    {
        var database = redis.GetDatabase();
        var batch = new List<RedisKey>();
        await foreach (var key in server.KeysAsync(pattern: prefix + "*", pageSize: 5_000))
        {
            batch.Add(key);
            if (batch.Count == 5_000)
            {
                await database.KeyDeleteAsync([.. batch]);
                batch.Clear();
            }
        }
        if (batch.Count > 0) await database.KeyDeleteAsync([.. batch]);
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
