using System.Diagnostics;
using System.Globalization;
using System.Text;
using Crm.BuildingBlocks.Tenancy;
using Crm.Contacts.V1;
using Crm.TestSupport;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using Npgsql;

namespace Crm.Bench;

/// <summary>
/// 1,000,000 line items (generated deterministically) imported through the gRPC import into a
/// running service (warmed up by a 50,000-row import), against psql's \copy of the same file into
/// a plain table on the same server in the same run.
/// </summary>
public static class ImportBench
{
    private static readonly TestTokenKeys Keys = TestTokenKeys.Generate("bench");

    public static async Task RunAsync(BenchEnvironment env, int rows)
    {
        var file = Path.Combine(env.WorkDir, $"line_items_{rows}.csv");
        if (!File.Exists(file)) Generate(file, rows);
        var warmUpFile = Path.Combine(env.WorkDir, "line_items_warm_up.csv");
        if (!File.Exists(warmUpFile)) Generate(warmUpFile, 50_000);

        // Baseline: psql \copy of the same file into a plain, unindexed table (best of two).
        var plain = await env.FreshDatabaseAsync("crm_bench_copy");
        double copySeconds = double.MaxValue;
        for (var i = 0; i < 2; i++)
        {
            await Psql(plain, "DROP TABLE IF EXISTS plain; CREATE TABLE plain (invoice text, stock_code text, description text, quantity numeric, invoice_date timestamp, price numeric, customer_id text, country text) WITH (autovacuum_enabled = false)");
            var sw = Stopwatch.StartNew();
            await Psql(plain, $"\\copy plain FROM '{file}' WITH (FORMAT csv, HEADER true)");
            copySeconds = Math.Min(copySeconds, sw.Elapsed.TotalSeconds);
        }

        // Leave nothing of the baseline behind to compete with the measured run (dirty buffers, autovacuum).
        await env.DropDatabaseAsync("crm_bench_copy");
        await Psql(env.Postgres, "CHECKPOINT");
        var db = await env.FreshDatabaseAsync("crm_bench_contacts");
        using var service = await env.StartServiceAsync("Crm.Contacts", new Dictionary<string, string>
        {
            ["ConnectionStrings:Postgres"] = db,
            ["ConnectionStrings:RabbitMq"] = env.RabbitMq,
            ["Contacts:SuppressionKey"] = Convert.ToBase64String(System.Security.Cryptography.RandomNumberGenerator.GetBytes(32)),
            ["Tenancy:PublicKeys:0:KeyId"] = Keys.KeyId,
            ["Tenancy:PublicKeys:0:Pem"] = Keys.PublicPem,
        });
        using var channel = GrpcChannel.ForAddress(service.GrpcAddress);
        var client = new ContactsService.ContactsServiceClient(channel);
        var tokens = Keys.Issuer();
        var headers = new Metadata { { "authorization", "Bearer " + tokens.Issue("bench", [Scope.All], TimeSpan.FromHours(1)) } };
        var baselineRss = service.PeakRssMiB();
        // A service runs for days: measure it warm, after a small import (into another workspace) has JIT-compiled the path.
        await ImportFileAsync(client, new Metadata { { "authorization", "Bearer " + tokens.Issue("bench-warm-up", [Scope.All], TimeSpan.FromHours(1)) } }, warmUpFile);
        // The warm-up is over when its events are published: the relay's first publish (compiling the
        // bus's send path) must not run inside the measured import.
        await WaitForOutboxAsync(db);

        var cpuBefore = service.CpuSeconds();
        var pgBefore = ServiceProcess.PostgresCpuSeconds();
        var backendsBefore = ServiceProcess.PostgresCpuSeconds("crm_bench_contacts");
        var watch = Stopwatch.StartNew();
        var result = await ImportFileAsync(client, headers, file);
        var seconds = watch.Elapsed.TotalSeconds;
        // Where the time went (on two cores the service and PostgreSQL compete): to stderr, not a bench line.
        Console.Error.WriteLine(FormattableString.Invariant($"import CPU: service {service.CpuSeconds() - cpuBefore:F1} s, postgres {ServiceProcess.PostgresCpuSeconds() - pgBefore:F1} s (of which this database's backends {ServiceProcess.PostgresCpuSeconds("crm_bench_contacts") - backendsBefore:F1} s), wall {seconds:F1} s"));
        if (result.Status != ImportStatus.Completed || result.RowsAccepted != rows)
            throw new InvalidOperationException($"import did not accept every row: {result}");

        var rate = rows / seconds;
        var copyRate = rows / copySeconds;
        Console.WriteLine(FormattableString.Invariant(
            $"bench import: {rate:F0} rows/s, {rate / copyRate:F2}x of psql \\copy ({rows} line items, {result.OrdersCreated} orders in {seconds:F1} s; \\copy {copySeconds:F1} s)"));
        Console.WriteLine(FormattableString.Invariant(
            $"bench import-memory: {service.PeakRssMiB():F0} MiB peak RSS, {service.PeakRssMiB() / baselineRss:F2}x of the idle service ({baselineRss:F0} MiB) for a {new FileInfo(file).Length / 1048576.0:F0} MiB file"));

        // Leave nothing behind to compete with the next benchmark (autovacuum of a million fresh rows).
        service.Dispose();
        await env.DropDatabaseAsync("crm_bench_contacts");
        await Psql(env.Postgres, "CHECKPOINT");
    }

    private static async Task WaitForOutboxAsync(string db)
    {
        await using var conn = new NpgsqlConnection(db);
        await conn.OpenAsync();
        await using var pending = new NpgsqlCommand("SELECT count(*) FROM outbox_messages WHERE published_at IS NULL", conn);
        var deadline = Stopwatch.StartNew();
        while ((long)(await pending.ExecuteScalarAsync())! > 0)
        {
            if (deadline.Elapsed > TimeSpan.FromSeconds(60)) throw new TimeoutException("the warm-up's events were not published");
            await Task.Delay(50);
        }
    }

    private static async Task<Import> ImportFileAsync(ContactsService.ContactsServiceClient client, Metadata headers, string file)
    {
        using var call = client.ImportTransactions(headers);
        await call.RequestStream.WriteAsync(new ImportChunk
        {
            Header = new ImportHeader
            {
                FileName = Path.GetFileName(file),
                Transactions = new TransactionColumns
                {
                    OrderId = "Invoice", CustomerId = "Customer ID", OccurredAt = "InvoiceDate", DateFormat = "yyyy-MM-dd HH:mm:ss",
                    TimeZone = "Asia/Seoul", FixedCurrency = "KRW", Sku = "StockCode", Name = "Description",
                    Quantity = "Quantity", UnitPrice = "Price", CancelledOrderPrefix = "C",
                },
            },
        });
        await using var stream = File.OpenRead(file);
        var buffer = new byte[64 * 1024];
        int n;
        while ((n = await stream.ReadAsync(buffer)) > 0)
            await call.RequestStream.WriteAsync(new ImportChunk { Data = ByteString.CopyFrom(buffer, 0, n) });
        await call.RequestStream.CompleteAsync();
        return await call;
    }

    /// <summary>A shop's line-item export: orders of 1–19 items, 50,000 customers, 5,000 products, Korean names.</summary>
    public static void Generate(string path, int rows)
    {
        var random = new Random(20261123);
        string[] words = ["무선 이어폰", "수분 크림", "러닝화", "텀블러", "블루투스 스피커", "gift set", "organic tea", "phone case, clear", "\"limited\" mug"];
        using var w = new StreamWriter(path, false, new UTF8Encoding(false), 1 << 20);
        w.Write("Invoice,StockCode,Description,Quantity,InvoiceDate,Price,Customer ID,Country\n");
        var written = 0;
        var order = 100000;
        var start = new DateTime(2025, 1, 1);
        while (written < rows)
        {
            order++;
            var cancelled = random.Next(50) == 0;
            var lines = Math.Min(random.Next(1, 20), rows - written);
            var at = start.AddMinutes(order * 5L % 525_000).ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture);
            var customer = random.Next(10) == 0 ? "" : (10000 + random.Next(50_000)).ToString(CultureInfo.InvariantCulture) + ".0";
            for (var i = 0; i < lines; i++)
            {
                var sku = "P" + random.Next(5000).ToString("D4", CultureInfo.InvariantCulture);
                var name = words[random.Next(words.Length)];
                var quoted = name.Contains(',') || name.Contains('"') ? "\"" + name.Replace("\"", "\"\"") + "\"" : name;
                var qty = (random.Next(1, 12) * (cancelled ? -1 : 1)).ToString(CultureInfo.InvariantCulture);
                var price = (random.Next(100, 200_000) / 100m).ToString(CultureInfo.InvariantCulture);
                w.Write(cancelled ? "C" : "");
                w.Write(order.ToString(CultureInfo.InvariantCulture));
                w.Write($",{sku},{quoted},{qty},{at},{price},{customer},South Korea\n");
            }
            written += lines;
        }
    }

    private static async Task Psql(string connectionString, string command)
    {
        var b = new NpgsqlConnectionStringBuilder(connectionString);
        var psi = new ProcessStartInfo("psql", ["-v", "ON_ERROR_STOP=1", "-q", "-h", b.Host!, "-p", b.Port.ToString(CultureInfo.InvariantCulture), "-U", b.Username!, "-d", b.Database ?? "postgres", "-c", command])
        {
            RedirectStandardError = true,
        };
        psi.Environment["PGPASSWORD"] = b.Password ?? "";
        using var p = Process.Start(psi)!;
        var err = await p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync();
        if (p.ExitCode != 0) throw new InvalidOperationException($"psql failed: {err}");
    }
}
