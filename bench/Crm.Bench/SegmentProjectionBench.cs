extern alias segmentation;

using System.Diagnostics;
using System.Globalization;
using Crm.BuildingBlocks.Data;
using Crm.Contracts.Contacts;
using Dapper;
using Npgsql;
using NpgsqlTypes;
using OrderProjection = segmentation::Crm.Segmentation.Features.Projections.OrderProjection;

namespace Crm.Bench;

/// <summary>
/// TransactionsRecorded applied to Segmentation's order projection — the consumer's own path
/// (OrderProjection.ApplyAsync in a TenantDb transaction, as crm_app under row-level security, one
/// transaction per event of Contacts' OrdersPerEvent orders, one event after another) — against binary
/// COPY of the same orders into the same table (the owner's, which row-level security does not bind),
/// on the generated shop of 1,000,000 contacts and 10,000,000 orders. Better of three runs each; each run
/// writes new orders (ids of its own) of the shop's contacts.
/// </summary>
public static class SegmentProjectionBench
{
    private const int Orders = 200_000;
    private const int Runs = 3;

    public static async Task RunAsync(BenchEnvironment env)
    {
        var data = await SegmentationData.EnsureAsync(env, "crm_bench_seg_projection");
        var tenant = data.Tenant;
        Guid[] contacts;
        await using (var owner = new NpgsqlConnection(data.ConnectionString))
            contacts = (await owner.QueryAsync<Guid>("SELECT contact_id FROM contacts ORDER BY contact_id LIMIT 100000")).ToArray();
        await using var app = NpgsqlDataSource.Create(data.AppConnectionString);
        var db = new TenantDb(app);

        // Both paths compiled and their connections opened before anything is measured.
        await ProjectAsync(db, tenant, Generate(contacts, "warm-p", 1_000));
        await CopyAsync(data.ConnectionString, tenant, Generate(contacts, "warm-c", 1_000));

        double projected = 0, copied = 0;
        for (var run = 0; run < Runs; run++)
        {
            // Each side on equal terms: no dirty marks left from the previous run, nothing unflushed.
            await SettleAsync(data.ConnectionString);
            var orders = Generate(contacts, $"c{run}", Orders);
            var watch = Stopwatch.StartNew();
            await CopyAsync(data.ConnectionString, tenant, orders);
            var copyRate = Orders / watch.Elapsed.TotalSeconds;
            copied = Math.Max(copied, copyRate);

            await SettleAsync(data.ConnectionString);
            orders = Generate(contacts, $"p{run}", Orders);
            var cpu = ServiceProcess.PostgresCpuSeconds();
            var own = Process.GetCurrentProcess().TotalProcessorTime;
            watch.Restart();
            await ProjectAsync(db, tenant, orders);
            var projectRate = Orders / watch.Elapsed.TotalSeconds;
            projected = Math.Max(projected, projectRate);
            Console.Error.WriteLine(FormattableString.Invariant(
                $"segment-projection run {run + 1}: projection {projectRate:F0} orders/s (CPU: postgres {ServiceProcess.PostgresCpuSeconds() - cpu:F1} s, this process {(Process.GetCurrentProcess().TotalProcessorTime - own).TotalSeconds:F1} s), COPY {copyRate:F0} orders/s"));
        }
        await using (var owner = new NpgsqlConnection(data.ConnectionString))
        {
            var written = await owner.ExecuteScalarAsync<long>("SELECT count(*) FROM orders WHERE order_id LIKE 'p_-%'");
            if (written != (long)Orders * Runs) throw new InvalidOperationException($"the projection wrote {written} of {Orders * Runs} orders");
        }
        Console.WriteLine(FormattableString.Invariant(
            $"bench segment-projection: {projected:F0} orders/s, {projected / copied:F2}x of COPY ({Orders} orders with 1-4 lines in events of {OrdersPerEvent}, onto {data.Orders} orders of {data.Contacts} contacts, best of {Runs}; binary COPY {copied:F0} orders/s)"));

        NpgsqlConnection.ClearAllPools();
        await env.DropDatabaseAsync(data.Database);
    }

    /// <summary>What one Contacts event carries (services/Contacts/Features/Imports/TransactionImport.cs).</summary>
    private const int OrdersPerEvent = Crm.Contacts.Features.Imports.TransactionImport.OrdersPerEvent;

    /// <summary>One TransactionsRecorded after another, each applied in its own tenant transaction, as the consumer does.</summary>
    private static async Task ProjectAsync(TenantDb db, string tenant, RecordedOrder[] orders)
    {
        foreach (var chunk in orders.Chunk(OrdersPerEvent))
        {
            await using var scope = await db.BeginAsync(tenant);
            await OrderProjection.ApplyAsync(scope, tenant, chunk, CancellationToken.None);
            await scope.CommitAsync();
        }
    }

    private static async Task CopyAsync(string ownerConnectionString, string tenant, RecordedOrder[] orders)
    {
        await using var conn = new NpgsqlConnection(ownerConnectionString);
        await conn.OpenAsync();
        await using var w = await conn.BeginBinaryImportAsync(
            "COPY orders (tenant_id, order_id, contact_id, occurred_at, currency, total, status, skus, categories, amounts) FROM STDIN (FORMAT BINARY)");
        foreach (var o in orders)
        {
            var lines = o.Lines!;
            w.StartRow();
            w.Write(tenant, NpgsqlDbType.Text);
            w.Write(o.OrderId, NpgsqlDbType.Text);
            w.Write(o.ContactId!.Value, NpgsqlDbType.Uuid);
            w.Write(o.OccurredAt.UtcDateTime, NpgsqlDbType.TimestampTz);
            w.Write(o.Currency, NpgsqlDbType.Text);
            w.Write(o.Total, NpgsqlDbType.Numeric);
            w.Write(o.Status, NpgsqlDbType.Text);
            w.Write(lines.Select(l => l.Sku).ToArray(), NpgsqlDbType.Array | NpgsqlDbType.Text);
            w.Write(lines.Select(l => l.Category!).ToArray(), NpgsqlDbType.Array | NpgsqlDbType.Text);
            w.Write(lines.Select(l => l.Amount).ToArray(), NpgsqlDbType.Array | NpgsqlDbType.Numeric);
        }
        await w.CompleteAsync();
    }

    private static async Task SettleAsync(string ownerConnectionString)
    {
        await using var conn = new NpgsqlConnection(ownerConnectionString);
        await conn.ExecuteAsync("DELETE FROM dirty_contacts; CHECKPOINT");
    }

    /// <summary>Orders as Contacts announces them (with lines), for the shop's contacts, ids prefixed by the run.</summary>
    private static RecordedOrder[] Generate(Guid[] contacts, string prefix, int count)
    {
        var random = new Random(prefix.GetHashCode(StringComparison.Ordinal));
        var catalogue = new SegmentationData.Catalogue(new Random(7), 3_000);
        var now = DateTimeOffset.UtcNow;
        var orders = new RecordedOrder[count];
        for (var i = 0; i < count; i++)
        {
            var lines = new RecordedLine[random.Next(1, 5)];
            for (var l = 0; l < lines.Length; l++)
            {
                var item = catalogue.Pick(random);
                var quantity = random.Next(1, 4);
                lines[l] = new RecordedLine(catalogue.Skus[item], catalogue.Categories[item], quantity, quantity * catalogue.Prices[item]);
            }
            var status = random.NextDouble() switch { < 0.92 => "completed", < 0.97 => "cancelled", _ => "refunded" };
            orders[i] = new RecordedOrder(contacts[random.Next(contacts.Length)], string.Create(CultureInfo.InvariantCulture, $"{prefix}-{i:D7}"),
                now.AddMinutes(-random.Next(60 * 24 * 30)), "KRW", lines.Sum(l => l.Amount), status,
                lines.Select(l => l.Sku).Distinct().ToArray(), lines.Select(l => l.Category!).Distinct().ToArray(), lines);
        }
        return orders;
    }
}
