extern alias segmentation;
using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Crm.BuildingBlocks.Data;
using Dapper;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;
using NpgsqlTypes;

namespace Crm.Bench;

/// <summary>What <see cref="SegmentationData.EnsureAsync"/> hands a benchmark: a Segmentation database of its own.</summary>
/// <param name="ConnectionString">The database owner's connection string (start the service with it: it migrates as the owner and runs as crm_app).</param>
/// <param name="AsOf">The moment the generated history ends ("now" of the data: the last orders and campaigns are just before it).</param>
public sealed record SegmentationDataSet(
    string Database, string ConnectionString, string Tenant, DateTimeOffset AsOf,
    long Contacts, long Orders, long Consents, long Messages, long Engagement, double TopFifthRevenueShare)
{
    /// <summary>The same database as the runtime role crm_app, which row-level security binds (set crm.tenant per transaction).</summary>
    public string AppConnectionString => Crm.TestSupport.TestServers.AppConnectionString(ConnectionString);
}

/// <summary>How much to generate. <see cref="Full"/> is what the benchmarks measure on.</summary>
public sealed record SegmentationDataSize(int Contacts, int Orders)
{
    public static readonly SegmentationDataSize Full = new(1_000_000, 10_000_000);
}

/// <summary>
/// Generated data for the Segmentation benchmarks: one shop ("bench-shop") with 1,000,000 contacts
/// created over three years and 10,000,000 orders, engagement with eight campaigns and their messages,
/// deterministic (fixed seeds; times relative to <see cref="SegmentationDataSet.AsOf"/>).
///
/// How it is loaded fast, and why it is still the service's schema:
/// - A fresh database is migrated by the service's own <see cref="Migrator"/> (the building blocks'
///   and Segmentation's migrations, row-level security and the crm_app grants included), as the
///   database's owner, exactly as the service does at start.
/// - Each projection table is then filled by binary COPY (Npgsql's BeginBinaryImport) as the owner:
///   its indexes (primary key included) are dropped first and rebuilt from their own definitions
///   (pg_get_indexdef / pg_get_constraintdef) after the COPY — a sorted build instead of 10M random
///   index inserts through 128 MB of shared buffers — and the table is ANALYZEd. PostgreSQL refuses
///   COPY FROM into a table whose row-level security binds the role, and FORCE binds even the owner:
///   the COPY runs in a transaction that sets NO FORCE and FORCE again before it commits, so no other
///   session ever sees the table without it (a superuser owner, as in the bench, is not bound at all).
///   Orders are copied on one connection while contacts, consents, messages and engagement go on a
///   second, so that generation (this process) and COPY (PostgreSQL) overlap on two cores.
/// - The filled database is kept as a template, named by a hash of the generator's version, the size
///   and the migrations it was built with, and each benchmark gets a copy
///   (CREATE DATABASE … TEMPLATE … STRATEGY FILE_COPY: a file copy, seconds instead of minutes). A
///   template is rebuilt when its data is older than <see cref="MaxAge"/> (so that "the last 30 days"
///   stays meaningful against the service's real clock); templates unused for a day are dropped.
///   `rm`-free reset: DROP DATABASE the crm_bench_seg_* databases.
/// </summary>
public static class SegmentationData
{
    /// <summary>Bump when what is generated changes: the template is then rebuilt.</summary>
    public const int GeneratorVersion = 1;

    public const string Tenant = "bench-shop";

    public static readonly TimeSpan MaxAge = TimeSpan.FromDays(7);
    private const string TemplatePrefix = "crm_bench_seg_";

    /// <summary>
    /// A database named <paramref name="database"/> (dropped and made again) holding the generated data,
    /// copied from the cached template, which is built first if there is none.
    /// </summary>
    public static async Task<SegmentationDataSet> EnsureAsync(BenchEnvironment env, string database, SegmentationDataSize? size = null, CancellationToken ct = default)
    {
        size ??= SegmentationDataSize.Full;
        var template = TemplatePrefix + Key(size);
        await using var admin = new NpgsqlConnection(env.Postgres);
        await admin.OpenAsync(ct);
        // One builder at a time per template, across processes (engineers share the server).
        var lockKey = BitConverter.ToInt64(SHA256.HashData(Encoding.UTF8.GetBytes(template)), 0);
        await admin.ExecuteAsync(new CommandDefinition("SELECT pg_advisory_lock(@lockKey)", new { lockKey }, commandTimeout: 0, cancellationToken: ct));
        try
        {
            var info = await ReadInfoAsync(admin, template);
            if (info is null || DateTimeOffset.UtcNow - info.AsOf > MaxAge)
            {
                NpgsqlConnection.ClearAllPools();
                await admin.ExecuteAsync($"DROP DATABASE IF EXISTS \"{template}\" WITH (FORCE)");
                info = await BuildAsync(env, template, size, ct);
            }
            info = info with { LastUsed = DateTimeOffset.UtcNow };
            await WriteInfoAsync(admin, template, info);
            await DropUnusedTemplatesAsync(admin, template);

            var sw = Stopwatch.StartNew();
            await admin.ExecuteAsync($"DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)");
            await admin.ExecuteAsync(new CommandDefinition($"CREATE DATABASE \"{database}\" TEMPLATE \"{template}\" STRATEGY FILE_COPY", commandTimeout: 0, cancellationToken: ct));
            Console.Error.WriteLine(FormattableString.Invariant($"segmentation data: {database} copied from {template} in {sw.Elapsed.TotalSeconds:F1} s"));
            var connectionString = new NpgsqlConnectionStringBuilder(env.Postgres) { Database = database }.ConnectionString;
            return new SegmentationDataSet(database, connectionString, Tenant, info.AsOf, info.Contacts, info.Orders, info.Consents, info.Messages, info.Engagement, info.TopFifthRevenueShare);
        }
        finally
        {
            await admin.ExecuteAsync("SELECT pg_advisory_unlock(@lockKey)", new { lockKey });
        }
    }

    /// <summary>The template's name: what was generated, how much, and the schema it went into.</summary>
    private static string Key(SegmentationDataSize size)
    {
        var text = new StringBuilder(FormattableString.Invariant($"{GeneratorVersion}/{size.Contacts}/{size.Orders}"));
        foreach (var source in Sources)
            foreach (var (version, name, sql) in source.Load().OrderBy(m => m.Version))
                text.Append('\n').Append(source.Module).Append(version).Append(name).Append(sql);
        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(text.ToString())))[..16];
    }

    private static MigrationSource[] Sources =>
        [MigrationSource.BuildingBlocks, new MigrationSource("segmentation", typeof(segmentation::Crm.Segmentation.SegmentationModule).Assembly)];

    // ---------------------------------------------------------------- building

    private static async Task<TemplateInfo> BuildAsync(BenchEnvironment env, string template, SegmentationDataSize size, CancellationToken ct)
    {
        var total = Stopwatch.StartNew();
        var building = template + "_building";
        await Crm.TestSupport.TestServers.DropDatabaseAsync(building);
        var owner = await Crm.TestSupport.TestServers.CreateDatabaseAsync(building);
        // The role the service runs as must exist for the migrator's grants (as the tests and benches start services).
        await Crm.TestSupport.TestServers.AsAppRoleAsync([KeyValuePair.Create("ConnectionStrings:Postgres", (string?)owner)]);
        await using (var migrations = NpgsqlDataSource.Create(owner))
            await new Migrator(migrations, Sources, NullLogger<Migrator>.Instance, Crm.TestSupport.TestServers.AppRole).MigrateAsync(ct);

        var asOf = new DateTimeOffset(DateTime.UtcNow.Date, TimeSpan.Zero);
        var generator = new Generator(size, asOf);
        var orders = Task.Run(() => generator.CopyOrdersAsync(owner, ct), ct);
        var rest = Task.Run(() => generator.CopyContactsAndEngagementAsync(owner, ct), ct);
        await Task.WhenAll(orders, rest);
        var info = new TemplateInfo(asOf, size.Contacts, orders.Result, rest.Result.Consents, rest.Result.Messages, rest.Result.Engagement,
            generator.TopFifthRevenueShare(), total.Elapsed.TotalSeconds, DateTimeOffset.UtcNow);

        NpgsqlConnection.ClearAllPools();
        await using (var admin = new NpgsqlConnection(env.Postgres))
        {
            await admin.OpenAsync(ct);
            await admin.ExecuteAsync($"ALTER DATABASE \"{building}\" RENAME TO \"{template}\"");
        }
        Console.Error.WriteLine(FormattableString.Invariant(
            $"segmentation data: generated and loaded {info.Contacts} contacts, {info.Orders} orders, {info.Consents} consents, {info.Messages} messages, {info.Engagement} engagement events in {info.LoadSeconds:F0} s (top 20% of buyers: {info.TopFifthRevenueShare:P0} of revenue)"));
        return info;
    }

    private sealed record TemplateInfo(DateTimeOffset AsOf, long Contacts, long Orders, long Consents, long Messages, long Engagement,
        double TopFifthRevenueShare, double LoadSeconds, DateTimeOffset LastUsed);

    // A template's facts live in its database comment: no table to keep out of the service's schema.
    private static async Task<TemplateInfo?> ReadInfoAsync(NpgsqlConnection admin, string template)
    {
        var comment = await admin.ExecuteScalarAsync<string?>(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = @template", new { template });
        return comment is null ? null : JsonSerializer.Deserialize<TemplateInfo>(comment);
    }

    private static Task WriteInfoAsync(NpgsqlConnection admin, string template, TemplateInfo info) =>
        // COMMENT takes a literal, not a parameter: the JSON has no quote but JSON's own, doubled here.
        admin.ExecuteAsync($"COMMENT ON DATABASE \"{template}\" IS '{JsonSerializer.Serialize(info).Replace("'", "''", StringComparison.Ordinal)}'");

    /// <summary>Templates of other sizes, schemas or generator versions nobody has used for a day (each is gigabytes).</summary>
    private static async Task DropUnusedTemplatesAsync(NpgsqlConnection admin, string keep)
    {
        var others = await admin.QueryAsync<string>(
            "SELECT datname FROM pg_database WHERE datname LIKE 'crm\\_bench\\_seg\\_%' AND datname <> @keep AND datname NOT LIKE '%\\_building'", new { keep });
        foreach (var name in others)
        {
            var info = await ReadInfoAsync(admin, name);
            if (info is not null && DateTimeOffset.UtcNow - info.LastUsed < TimeSpan.FromDays(1)) continue;
            var lockKey = BitConverter.ToInt64(SHA256.HashData(Encoding.UTF8.GetBytes(name)), 0);
            if (!await admin.ExecuteScalarAsync<bool>("SELECT pg_try_advisory_lock(@lockKey)", new { lockKey })) continue; // being used
            try
            {
                await admin.ExecuteAsync($"DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
            }
            finally
            {
                await admin.ExecuteAsync("SELECT pg_advisory_unlock(@lockKey)", new { lockKey });
            }
        }
    }

    /// <summary>
    /// A table filled by binary COPY as its owner: indexes dropped before and rebuilt from their own
    /// definitions after, row-level security's FORCE lifted only inside the loading transaction, then ANALYZE.
    /// </summary>
    private static async Task<long> CopyIntoAsync(string connectionString, string table, string columns, Func<NpgsqlBinaryImporter, long> write, CancellationToken ct)
    {
        await using var conn = new NpgsqlConnection(connectionString);
        await conn.OpenAsync(ct);
        await conn.ExecuteAsync("SET maintenance_work_mem = '512MB'");
        await using var tx = await conn.BeginTransactionAsync(ct);
        var constraints = (await conn.QueryAsync<(string Name, string Definition)>(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = @table::regclass AND contype IN ('p', 'u')", new { table }, tx)).AsList();
        var indexes = (await conn.QueryAsync<(string Name, string Definition)>("""
            SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i
            WHERE i.indrelid = @table::regclass AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
            """, new { table }, tx)).AsList();
        foreach (var (name, _) in indexes) await conn.ExecuteAsync($"DROP INDEX \"{name}\"", transaction: tx);
        foreach (var (name, _) in constraints) await conn.ExecuteAsync($"ALTER TABLE {table} DROP CONSTRAINT \"{name}\"", transaction: tx);
        await conn.ExecuteAsync($"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY", transaction: tx);

        long rows;
        await using (var importer = await conn.BeginBinaryImportAsync($"COPY {table} ({columns}) FROM STDIN (FORMAT BINARY)", ct))
        {
            rows = write(importer);
            await importer.CompleteAsync(ct);
        }

        foreach (var (name, definition) in constraints)
            await conn.ExecuteAsync(new CommandDefinition($"ALTER TABLE {table} ADD CONSTRAINT \"{name}\" {definition}", transaction: tx, commandTimeout: 0, cancellationToken: ct));
        foreach (var (_, definition) in indexes)
            await conn.ExecuteAsync(new CommandDefinition(definition, transaction: tx, commandTimeout: 0, cancellationToken: ct));
        await conn.ExecuteAsync($"ALTER TABLE {table} FORCE ROW LEVEL SECURITY", transaction: tx);
        await tx.CommitAsync(ct);
        await conn.ExecuteAsync(new CommandDefinition($"ANALYZE {table}", commandTimeout: 0, cancellationToken: ct));
        return rows;
    }

    // ---------------------------------------------------------------- the generator

    private static double Normal(Random random) =>
        Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble());

    /// <summary>
    /// The shop. Contacts first (in memory, 1M small structs): when each joined, which channels and
    /// consents it has, how many orders it will place and how big its baskets are; the tables are then
    /// generated from them, each stream with its own seeded random source so that the two COPY streams
    /// run in parallel and the data stays the same from run to run.
    /// </summary>
    private sealed class Generator
    {
        private const double ThreeYears = 3 * 365.25;
        private static readonly string[] Locales = ["ko-KR", "ko-KR", "ko-KR", "ko-KR", "ko-KR", "ko-KR", "ko-KR", "en-US", "en-US", "ja-JP", "zh-CN", "en-GB"];
        private static readonly string[] Zones = ["Asia/Seoul", "Asia/Seoul", "Asia/Seoul", "Asia/Seoul", "Asia/Seoul", "Asia/Seoul", "Asia/Seoul", "America/Los_Angeles", "America/New_York", "Asia/Tokyo", "Asia/Shanghai", "Europe/London"];
        private static readonly string[] Tags = ["newsletter", "app-user", "vip", "wholesale", "event-2024", "referral", "store-visit", "review-writer"];
        private static readonly double[] TagShare = [0.35, 0.30, 0.04, 0.02, 0.10, 0.08, 0.15, 0.05];
        private static readonly string[] Grades = ["bronze", "bronze", "bronze", "silver", "silver", "gold"];
        private static readonly string[] Cities = ["Seoul", "Seoul", "Seoul", "Busan", "Incheon", "Daegu", "Daejeon", "Gwangju", "Suwon", "Jeju"];
        private static readonly string[] Sources = ["web", "web", "app", "store", "referral"];

        private readonly SegmentationDataSize _size;
        private readonly DateTime _asOf;
        private readonly Person[] _people;
        private readonly double[] _revenue;
        private readonly Catalogue _catalogue = new(new Random(7), 3_000);

        [Flags]
        private enum Reach : byte
        {
            Email = 1, Phone = 2, EmailConsent = 4, EmailOptIn = 8, SmsConsent = 16, SmsOptIn = 32, NightOptIn = 64, Responsive = 128,
        }

        private struct Person
        {
            public Guid Id;
            public long Created;      // ticks
            public long BuysFrom;     // ticks: first order
            public long BuysUntil;    // ticks: last order (churned buyers stop before AsOf)
            public int Orders;
            public float Basket;      // how big this buyer's baskets are (lognormal around 1)
            public Reach Reach;
        }

        public Generator(SegmentationDataSize size, DateTimeOffset asOf)
        {
            _size = size;
            _asOf = asOf.UtcDateTime;
            _people = new Person[size.Contacts];
            _revenue = new double[size.Contacts];
            var random = new Random(1);
            var id = new byte[16];
            var weights = new double[size.Contacts];
            var start = _asOf.AddDays(-ThreeYears).Ticks;
            var span = _asOf.Ticks - start;
            for (var i = 0; i < _people.Length; i++)
            {
                ref var p = ref _people[i];
                random.NextBytes(id);
                p.Id = new Guid(id);
                // A shop that grew: more sign-ups lately (density rising towards AsOf).
                p.Created = start + (long)(span * Math.Sqrt(random.NextDouble()));
                var reach = default(Reach);
                if (random.NextDouble() < 0.60) reach |= Reach.Email;
                if (random.NextDouble() < 0.70) reach |= Reach.Phone;
                if (reach.HasFlag(Reach.Email) && random.NextDouble() < 0.70)
                    reach |= Reach.EmailConsent | (random.NextDouble() < 0.55 ? Reach.EmailOptIn : 0);
                if (reach.HasFlag(Reach.Phone) && random.NextDouble() < 0.75)
                {
                    reach |= Reach.SmsConsent;
                    if (random.NextDouble() < 0.45) reach |= Reach.SmsOptIn | (random.NextDouble() < 0.4 ? Reach.NightOptIn : 0);
                }
                if (random.NextDouble() < 0.3) reach |= Reach.Responsive;
                p.Reach = reach;
                // 72% of contacts ever buy. Orders per buyer: Pareto (alpha 1.15), longer-standing customers more.
                if (random.NextDouble() < 0.72)
                {
                    var years = Math.Clamp((_asOf.Ticks - p.Created) / (double)TimeSpan.TicksPerDay / 365.25, 0.05, 3);
                    weights[i] = Math.Pow(1 - random.NextDouble(), -1 / 1.15) * Math.Sqrt(years);
                    p.BuysFrom = Math.Min(_asOf.Ticks - TimeSpan.TicksPerHour, p.Created + (long)(TimeSpan.TicksPerDay * -Math.Log(1 - random.NextDouble()) * 20));
                    // 45% still buying; the rest stopped somewhere between their first order and now.
                    p.BuysUntil = random.NextDouble() < 0.45 ? _asOf.Ticks - TimeSpan.TicksPerMinute
                        : p.BuysFrom + (long)((_asOf.Ticks - p.BuysFrom) * random.NextDouble());
                    p.Basket = (float)Math.Exp(Normal(random) * 0.6);
                }
            }
            Allocate(weights);
        }

        /// <summary>Orders per buyer in proportion to their weights, at least one each, at most 3,000, summing to exactly the size's orders.</summary>
        private void Allocate(double[] weights)
        {
            const int cap = 3_000;
            var buyers = weights.Count(w => w > 0);
            var budget = (double)(_size.Orders - buyers); // one each, the rest by weight
            var sum = weights.Sum();
            long allocated = 0;
            for (var i = 0; i < _people.Length; i++)
            {
                if (weights[i] <= 0) continue;
                _people[i].Orders = (int)Math.Min(cap, 1 + Math.Floor(weights[i] / sum * budget));
                allocated += _people[i].Orders;
            }
            // What rounding and the cap left over goes to buyers in turn, heaviest first.
            var order = Enumerable.Range(0, _people.Length).Where(i => weights[i] > 0).OrderByDescending(i => weights[i]).ToArray();
            for (var k = 0; allocated < _size.Orders; k = (k + 1) % order.Length)
            {
                if (_people[order[k]].Orders >= cap) continue;
                _people[order[k]].Orders++;
                allocated++;
            }
        }

        public double TopFifthRevenueShare()
        {
            var spent = _revenue.Where(r => r > 0).OrderByDescending(r => r).ToArray();
            return spent.Take(spent.Length / 5).Sum() / spent.Sum();
        }

        public Task<long> CopyOrdersAsync(string connectionString, CancellationToken ct) =>
            CopyIntoAsync(connectionString, "orders", "tenant_id, order_id, contact_id, occurred_at, currency, total, status, skus, categories, amounts", w =>
            {
                var random = new Random(2);
                long seq = 0;
                for (var i = 0; i < _people.Length; i++)
                {
                    ref var p = ref _people[i];
                    var revenue = 0.0;
                    for (var n = 0; n < p.Orders; n++)
                    {
                        var lines = random.NextDouble() switch { < 0.50 => 1, < 0.75 => 2, < 0.90 => 3, _ => 4 };
                        var skus = new string[lines];
                        var categories = new string[lines];
                        var amounts = new decimal[lines];
                        var total = 0m;
                        for (var l = 0; l < lines; l++)
                        {
                            var item = _catalogue.Pick(random);
                            var quantity = random.NextDouble() switch { < 0.70 => 1, < 0.90 => 2, _ => 3 } * Math.Max(1, (int)MathF.Round(p.Basket));
                            skus[l] = _catalogue.Skus[item];
                            categories[l] = _catalogue.Categories[item];
                            amounts[l] = quantity * _catalogue.Prices[item];
                            total += amounts[l];
                        }
                        var status = random.NextDouble() switch { < 0.92 => "completed", < 0.97 => "cancelled", _ => "refunded" };
                        if (status == "completed") revenue += (double)total;
                        w.StartRow();
                        w.Write(Tenant, NpgsqlDbType.Text);
                        w.Write(string.Create(CultureInfo.InvariantCulture, $"O{++seq:D9}"), NpgsqlDbType.Text);
                        w.Write(p.Id, NpgsqlDbType.Uuid);
                        w.Write(new DateTime(p.BuysFrom + (long)((p.BuysUntil - p.BuysFrom) * random.NextDouble()), DateTimeKind.Utc), NpgsqlDbType.TimestampTz);
                        w.Write("KRW", NpgsqlDbType.Text);
                        w.Write(total, NpgsqlDbType.Numeric);
                        w.Write(status, NpgsqlDbType.Text);
                        w.Write(skus, NpgsqlDbType.Array | NpgsqlDbType.Text);
                        w.Write(categories, NpgsqlDbType.Array | NpgsqlDbType.Text);
                        w.Write(amounts, NpgsqlDbType.Array | NpgsqlDbType.Numeric);
                    }
                    _revenue[i] = revenue;
                }
                return seq;
            }, ct);

        public async Task<(long Consents, long Messages, long Engagement)> CopyContactsAndEngagementAsync(string connectionString, CancellationToken ct)
        {
            await CopyIntoAsync(connectionString, "contacts",
                "tenant_id, contact_id, external_id, locale, time_zone, tags, attributes, has_email, has_phone, push_tokens, suppressed, created_at, version_at", WriteContacts, ct);
            var consents = await CopyIntoAsync(connectionString, "consents", "tenant_id, contact_id, channel, purpose, status, changed_at", WriteConsents, ct);
            await CopyIntoAsync(connectionString, "unreachable_channels", "tenant_id, contact_id, channel, reason, occurred_at", WriteUnreachable, ct);
            var (messages, engagement) = Campaigns();
            var messageRows = await CopyIntoAsync(connectionString, "messages",
                "tenant_id, message_id, contact_id, channel, campaign_id, outcome, reason, rule_id, occurred_at", w => WriteMessages(w, messages), ct);
            var engagementRows = await CopyIntoAsync(connectionString, "engagement",
                "tenant_id, event_id, contact_id, type, channel, message_id, campaign_id, occurred_at", w => WriteEngagement(w, engagement), ct);
            return (consents, messageRows, engagementRows);
        }

        private long WriteContacts(NpgsqlBinaryImporter w)
        {
            var random = new Random(3);
            var tags = new List<string>(4);
            var attributes = new StringBuilder(200);
            for (var i = 0; i < _people.Length; i++)
            {
                ref var p = ref _people[i];
                var place = random.Next(Locales.Length);
                tags.Clear();
                for (var t = 0; t < Tags.Length; t++) if (random.NextDouble() < TagShare[t]) tags.Add(Tags[t]);
                var created = new DateTime(p.Created, DateTimeKind.Utc);
                attributes.Clear();
                attributes.Append(CultureInfo.InvariantCulture,
                    $$"""{"grade": "{{Grades[random.Next(Grades.Length)]}}", "city": "{{Cities[random.Next(Cities.Length)]}}", "age": {{18 + (int)(random.NextDouble() * random.NextDouble() * 60)}}, "signup_source": "{{Sources[random.Next(Sources.Length)]}}", "member": {{(random.NextDouble() < 0.4 ? "true" : "false")}}""");
                if (random.NextDouble() < 0.5)
                    attributes.Append(CultureInfo.InvariantCulture, $$""", "birthday": {"$date": "{{new DateTime(1960, 1, 1, 0, 0, 0, DateTimeKind.Utc).AddDays(random.Next(16_000)):O}}"}""");
                attributes.Append('}');
                w.StartRow();
                w.Write(Tenant, NpgsqlDbType.Text);
                w.Write(p.Id, NpgsqlDbType.Uuid);
                w.Write(string.Create(CultureInfo.InvariantCulture, $"C{i + 1:D7}"), NpgsqlDbType.Text);
                w.Write(Locales[place], NpgsqlDbType.Text);
                w.Write(Zones[place], NpgsqlDbType.Text);
                w.Write(tags.ToArray(), NpgsqlDbType.Array | NpgsqlDbType.Text);
                w.Write(attributes.ToString(), NpgsqlDbType.Jsonb);
                w.Write(p.Reach.HasFlag(Reach.Email), NpgsqlDbType.Boolean);
                w.Write(p.Reach.HasFlag(Reach.Phone), NpgsqlDbType.Boolean);
                w.Write(tags.Contains("app-user") ? 1 + random.Next(2) : 0, NpgsqlDbType.Integer);
                w.Write(random.NextDouble() < 0.005, NpgsqlDbType.Boolean);
                w.Write(created, NpgsqlDbType.TimestampTz);
                w.Write(created.AddDays(random.NextDouble() * (_asOf - created).TotalDays), NpgsqlDbType.TimestampTz);
            }
            return _people.Length;
        }

        private long WriteConsents(NpgsqlBinaryImporter w)
        {
            var random = new Random(4);
            long rows = 0;
            void Row(in Person p, string channel, string purpose, bool optedIn)
            {
                var at = new DateTime(p.Created, DateTimeKind.Utc).AddDays(random.NextDouble() * Math.Min(30, (_asOf - new DateTime(p.Created, DateTimeKind.Utc)).TotalDays));
                w.StartRow();
                w.Write(Tenant, NpgsqlDbType.Text);
                w.Write(p.Id, NpgsqlDbType.Uuid);
                w.Write(channel, NpgsqlDbType.Text);
                w.Write(purpose, NpgsqlDbType.Text);
                w.Write(optedIn ? "opted_in" : "opted_out", NpgsqlDbType.Text);
                w.Write(at, NpgsqlDbType.TimestampTz);
                rows++;
            }
            foreach (ref readonly var p in _people.AsSpan())
            {
                if (p.Reach.HasFlag(Reach.EmailConsent)) Row(p, "email", "marketing", p.Reach.HasFlag(Reach.EmailOptIn));
                if (p.Reach.HasFlag(Reach.SmsConsent))
                {
                    Row(p, "sms", "marketing", p.Reach.HasFlag(Reach.SmsOptIn));
                    if (p.Reach.HasFlag(Reach.SmsOptIn)) Row(p, "sms", "marketing_night", p.Reach.HasFlag(Reach.NightOptIn));
                }
            }
            return rows;
        }

        private long WriteUnreachable(NpgsqlBinaryImporter w)
        {
            var random = new Random(5);
            long rows = 0;
            foreach (ref readonly var p in _people.AsSpan())
            {
                if (!p.Reach.HasFlag(Reach.Email) || random.NextDouble() >= 0.015) continue;
                w.StartRow();
                w.Write(Tenant, NpgsqlDbType.Text);
                w.Write(p.Id, NpgsqlDbType.Uuid);
                w.Write("email", NpgsqlDbType.Text);
                w.Write("550 5.1.1 mailbox unavailable", NpgsqlDbType.Text);
                w.Write(new DateTime(p.Created, DateTimeKind.Utc).AddDays(random.NextDouble() * (_asOf - new DateTime(p.Created, DateTimeKind.Utc)).TotalDays), NpgsqlDbType.TimestampTz);
                rows++;
            }
            return rows;
        }

        private sealed record Campaign(string Id, string Channel, int DaysAgo, double Audience);

        /// <summary>Five email and three SMS campaigns over the last year, each to a share of the contacts opted in then.</summary>
        private static readonly Campaign[] CampaignList =
        [
            new("spring-sale", "email", 330, 0.85), new("summer-sale", "email", 240, 0.80), new("autumn-sale", "email", 150, 0.80),
            new("black-friday", "email", 60, 0.90), new("year-end", "email", 14, 0.85),
            new("sms-flash-1", "sms", 200, 0.70), new("sms-flash-2", "sms", 45, 0.70), new("sms-vip", "sms", 7, 0.30),
        ];

        private readonly record struct MessageRow(Guid MessageId, int Person, string Channel, string Campaign, byte Outcome, DateTime At);

        private readonly record struct EngagementRow(int Person, string Type, string Channel, Guid MessageId, string Campaign, DateTime At);

        private (List<MessageRow>, List<EngagementRow>) Campaigns()
        {
            var random = new Random(6);
            var messages = new List<MessageRow>();
            var engagement = new List<EngagementRow>();
            var id = new byte[16];
            foreach (var c in CampaignList)
            {
                var sentAt = _asOf.AddDays(-c.DaysAgo).AddHours(1);
                var optIn = c.Channel == "email" ? Reach.EmailOptIn : Reach.SmsOptIn;
                for (var i = 0; i < _people.Length; i++)
                {
                    ref var p = ref _people[i];
                    if (!p.Reach.HasFlag(optIn) || p.Created > sentAt.Ticks || random.NextDouble() >= c.Audience) continue;
                    random.NextBytes(id);
                    var messageId = new Guid(id);
                    var at = sentAt.AddSeconds(random.Next(3_600));
                    var outcome = random.NextDouble() switch { < 0.97 => (byte)0, < 0.99 => (byte)1, _ => (byte)2 };
                    messages.Add(new MessageRow(messageId, i, c.Channel, c.Id, outcome, at));
                    if (outcome != 0 || random.NextDouble() >= 0.96) continue;
                    engagement.Add(new EngagementRow(i, "delivered", c.Channel, messageId, c.Id, at.AddSeconds(5 + random.Next(120))));
                    var responsive = p.Reach.HasFlag(Reach.Responsive);
                    if (c.Channel == "email")
                    {
                        if (random.NextDouble() >= (responsive ? 0.55 : 0.08)) continue;
                        var opened = at.AddMinutes(5 + random.Next(3 * 24 * 60));
                        engagement.Add(new EngagementRow(i, "opened", c.Channel, messageId, c.Id, opened));
                        if (random.NextDouble() < (responsive ? 0.30 : 0.10))
                            engagement.Add(new EngagementRow(i, "clicked", c.Channel, messageId, c.Id, opened.AddSeconds(10 + random.Next(600))));
                    }
                    else if (random.NextDouble() < (responsive ? 0.12 : 0.02))
                        engagement.Add(new EngagementRow(i, "clicked", c.Channel, messageId, c.Id, at.AddMinutes(1 + random.Next(24 * 60))));
                }
            }
            return (messages, engagement);
        }

        private long WriteMessages(NpgsqlBinaryImporter w, List<MessageRow> rows)
        {
            foreach (var m in rows)
            {
                w.StartRow();
                w.Write(Tenant, NpgsqlDbType.Text);
                w.Write(m.MessageId, NpgsqlDbType.Uuid);
                w.Write(_people[m.Person].Id, NpgsqlDbType.Uuid);
                w.Write(m.Channel, NpgsqlDbType.Text);
                w.Write(m.Campaign, NpgsqlDbType.Text);
                w.Write(m.Outcome switch { 0 => "sent", 1 => "suppressed", _ => "failed" }, NpgsqlDbType.Text);
                if (m.Outcome == 0) { w.WriteNull(); w.WriteNull(); }
                else if (m.Outcome == 1) { w.Write("frequency cap weekly-3", NpgsqlDbType.Text); w.Write("weekly-3", NpgsqlDbType.Text); }
                else { w.Write("provider error 503", NpgsqlDbType.Text); w.WriteNull(); }
                w.Write(m.At, NpgsqlDbType.TimestampTz);
            }
            return rows.Count;
        }

        private long WriteEngagement(NpgsqlBinaryImporter w, List<EngagementRow> rows)
        {
            long seq = 0;
            foreach (var e in rows)
            {
                w.StartRow();
                w.Write(Tenant, NpgsqlDbType.Text);
                w.Write(string.Create(CultureInfo.InvariantCulture, $"E{++seq:D9}"), NpgsqlDbType.Text);
                w.Write(_people[e.Person].Id, NpgsqlDbType.Uuid);
                w.Write(e.Type, NpgsqlDbType.Text);
                w.Write(e.Channel, NpgsqlDbType.Text);
                w.Write(e.MessageId.ToString(), NpgsqlDbType.Text);
                w.Write(e.Campaign, NpgsqlDbType.Text);
                w.Write(e.At, NpgsqlDbType.TimestampTz);
            }
            return seq;
        }
    }

    /// <summary>A few thousand products in 40 categories; a few sell far more often than the rest.</summary>
    private sealed class Catalogue
    {
        public readonly string[] Skus;
        public readonly string[] Categories;
        public readonly decimal[] Prices;

        public Catalogue(Random random, int size)
        {
            string[] names = ["tea", "coffee", "snacks", "kimchi", "noodles", "sauces", "rice", "fruit", "vegetables", "meat", "seafood", "dairy",
                "bakery", "beverages", "supplements", "skincare", "makeup", "haircare", "fragrance", "bath", "kitchen", "tableware", "bedding",
                "furniture", "lighting", "stationery", "books", "toys", "baby", "pets", "outdoor", "sports", "shoes", "bags", "accessories",
                "womenswear", "menswear", "kidswear", "electronics", "gifts"];
            Skus = new string[size];
            Categories = new string[size];
            Prices = new decimal[size];
            for (var i = 0; i < size; i++)
            {
                Skus[i] = string.Create(CultureInfo.InvariantCulture, $"SKU-{i:D5}");
                Categories[i] = names[random.Next(names.Length)];
                // KRW, log-normal around 20,000, rounded to 100.
                Prices[i] = Math.Max(1_000m, Math.Round((decimal)(20_000 * Math.Exp(Normal(random) * 0.8)) / 100m) * 100m);
            }
        }

        /// <summary>A product, skewed: the first tenth of the catalogue gets about half the sales.</summary>
        public int Pick(Random random) => (int)(Skus.Length * Math.Pow(random.NextDouble(), 3.3));
    }
}
