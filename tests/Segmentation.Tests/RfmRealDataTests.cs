extern alias contacts;

using System.Globalization;
using System.IO.Compression;
using System.Text;
using Crm.Segmentation.Tests.Infrastructure;
using Crm.Segmentation.V1;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Xunit.Abstractions;
using C = contacts::Crm.Contacts.V1;

namespace Crm.Segmentation.Tests;

/// <summary>
/// RFM on a real shop's orders: a slice of the UCI Online Retail II export (2009-12-01 to 2010-12-09: every
/// line item of the 372 customers whose id's CRC-32 is divisible by 12, 38,505 rows, cancellations included,
/// copied into data/online_retail_rfm_slice.csv.gz) imported through Contacts as any shop would, projected by
/// Segmentation from Contacts' events, scored by the service, and compared contact by contact with
/// <see cref="RfmByHand"/> computing from the CSV itself.
/// </summary>
[Collection(SegmentationCollection.Name)]
public sealed class RfmRealDataTests(SegmentationFixture fx, ITestOutputHelper output)
{
    /// <summary>The day after the last invoice: the window [2009-12-10, 2010-12-10) leaves out the file's first nine days.</summary>
    private static readonly DateTimeOffset AsOf = new(2010, 12, 10, 0, 0, 0, TimeSpan.Zero);

    private static byte[] Csv()
    {
        using var gz = new GZipStream(File.OpenRead(Path.Combine(AppContext.BaseDirectory, "data", "online_retail_rfm_slice.csv.gz")), CompressionMode.Decompress);
        using var bytes = new MemoryStream();
        gz.CopyTo(bytes);
        return bytes.ToArray();
    }

    [Fact]
    public async Task Should_score_every_customer_of_a_real_shop_as_the_definition_computed_from_the_csv()
    {
        var csv = Csv();
        var expectedOrders = OrdersOf(csv);
        var tenant = SegmentationFixture.NewTenant();
        await fx.StartContactsAsync();
        var contactsClient = new C.ContactsService.ContactsServiceClient(fx.ContactsChannel);
        fx.Clock.Set(AsOf);
        try
        {
            var import = await ImportAsync(contactsClient, fx.As(tenant), csv);
            Assert.Equal(C.ImportStatus.Completed, import.Status);
            Assert.Equal(expectedOrders.Count, import.OrdersCreated);

            // Projected, refreshed, and the scores recomputed after the last change.
            await fx.WaitUntilAsync("SELECT count(*) FROM orders WHERE tenant_id = @tenant", new { tenant }, expectedOrders.Count);
            await fx.WaitScoresSettledAsync(tenant, seconds: 120);

            var externalIds = await ExternalIdsAsync(contactsClient, tenant);
            var stored = await fx.AllScoresAsync(tenant, pageSize: 100);
            var asOf = stored[0].AsOf.ToDateTime();
            Assert.All(stored, s => Assert.Equal(asOf, s.AsOf.ToDateTime()));
            Assert.InRange(asOf, AsOf.UtcDateTime, AsOf.UtcDateTime.AddMinutes(5)); // the service's clock, a moment after AsOf

            var expected = RfmByHand.Compute(expectedOrders, asOf, 365);
            Assert.InRange(expected.Scores.Count, 300, 372); // some customers bought only before the window
            Assert.Equal(expected.Scores.Count, stored.Count);
            foreach (var s in stored)
            {
                var e = expected.Scores[externalIds[s.ContactId]];
                Assert.Equal((e.Customer, e.RecencyDays, e.Frequency, (double)e.Monetary, e.R, e.F, e.M, e.Segment),
                    (e.Customer, s.RecencyDays, s.Frequency, s.Monetary, s.R, s.F, s.M, s.Segment));
            }
            // The scores spread over every value, and the default table names most of the shop's customers.
            foreach (var score in new Func<RfmScore, int>[] { s => s.R, s => s.F, s => s.M })
                Assert.Equal([1, 2, 3, 4, 5], stored.Select(score).Distinct().Order());
            Assert.True(stored.Select(s => s.Segment).Distinct().Count() >= 6);

            // The report, on the fly for the same time and window, and for an earlier quarter.
            await AssertReportAsync(tenant, expectedOrders, asOf, 365);
            await AssertReportAsync(tenant, expectedOrders, new DateTime(2010, 6, 1, 0, 0, 0, DateTimeKind.Utc), 90);
        }
        finally
        {
            fx.Clock.Set(DateTimeOffset.UtcNow);
        }
    }

    private async Task AssertReportAsync(string tenant, IReadOnlyList<RfmByHand.Order> orders, DateTime asOf, int windowDays)
    {
        var result = RfmByHand.Compute(orders, asOf, windowDays);
        var expected = RfmByHand.Figures(result);
        var report = await fx.Client.GetRfmReportAsync(new GetRfmReportRequest { AsOf = Timestamp.FromDateTime(asOf), WindowDays = windowDays },
            fx.As(tenant, "segments.read"));

        output.WriteLine(FormattableString.Invariant(
            $"as of {asOf:yyyy-MM-dd}, {windowDays} days: {report.Customers} customers, {report.Revenue:F2} GBP, top 20% {report.Top20PercentRevenueShare:P1}; breakpoints R {string.Join('/', report.Breakpoints.RecencyDays)} F {string.Join('/', report.Breakpoints.Frequency)} M {string.Join('/', report.Breakpoints.Monetary)}"));
        foreach (var s in report.Segments)
            output.WriteLine(FormattableString.Invariant($"  {s.Name}: {s.Contacts} contacts, {s.RevenueShare:P1} of revenue, {s.AverageOrderValue:F2} per order, median {s.MedianDaysSinceLastOrder} days"));
        Assert.Equal(asOf, report.AsOf.ToDateTime());
        Assert.Equal(windowDays, report.WindowDays);
        Assert.Equal(expected.Customers, report.Customers);
        Assert.Equal((double)expected.Revenue, report.Revenue, 1e-6);
        Assert.Equal((double)expected.TopShare, report.Top20PercentRevenueShare, 1e-12);
        Assert.Equal(result.RecencyBreakpoints, report.Breakpoints.RecencyDays);
        Assert.Equal(result.FrequencyBreakpoints.Select(f => (double)f), report.Breakpoints.Frequency);
        Assert.Equal(result.MonetaryBreakpoints.Select(m => (double)m), report.Breakpoints.Monetary);
        Assert.Equal(expected.Segments.Select(s => s.Name), report.Segments.Select(s => s.Name));
        foreach (var (e, s) in expected.Segments.Zip(report.Segments))
        {
            Assert.Equal(e.Contacts, s.Contacts);
            Assert.Equal((double)e.Revenue, s.Revenue, 1e-6);
            Assert.Equal((double)e.RevenueShare, s.RevenueShare, 1e-12);
            Assert.Equal((double)e.AverageOrderValue, s.AverageOrderValue, 1e-9);
            Assert.Equal(e.MedianDays, s.MedianDaysSinceLastOrder, 1e-12);
        }
    }

    private async Task<Dictionary<string, string>> ExternalIdsAsync(C.ContactsService.ContactsServiceClient client, string tenant)
    {
        var ids = new Dictionary<string, string>();
        var token = "";
        do
        {
            var page = await client.ListContactsAsync(new C.ListContactsRequest { PageSize = 1000, PageToken = token }, fx.As(tenant));
            foreach (var c in page.Contacts) ids[c.Id] = c.ExternalId;
            token = page.NextPageToken;
        }
        while (token.Length > 0);
        return ids;
    }

    /// <summary>Through Contacts' streaming import, with the Online Retail mapping: London times, GBP, "C…" invoices cancelled.</summary>
    private static async Task<C.Import> ImportAsync(C.ContactsService.ContactsServiceClient client, CallOptions options, byte[] csv)
    {
        using var call = client.ImportTransactions(options);
        await call.RequestStream.WriteAsync(new C.ImportChunk
        {
            Header = new C.ImportHeader
            {
                FileName = "online_retail_rfm_slice.csv",
                Transactions = new C.TransactionColumns
                {
                    OrderId = "Invoice", CustomerId = "Customer ID", OccurredAt = "InvoiceDate", DateFormat = "yyyy-MM-dd HH:mm:ss",
                    TimeZone = "Europe/London", FixedCurrency = "GBP", Sku = "StockCode", Name = "Description",
                    Quantity = "Quantity", UnitPrice = "Price", CancelledOrderPrefix = "C",
                },
            },
        });
        for (var offset = 0; offset < csv.Length; offset += 64 * 1024)
            await call.RequestStream.WriteAsync(new C.ImportChunk { Data = ByteString.CopyFrom(csv, offset, Math.Min(64 * 1024, csv.Length - offset)) });
        await call.RequestStream.CompleteAsync();
        return await call;
    }

    /// <summary>
    /// The file's orders, read as a shop's export means them: one row per line item, an invoice is an order
    /// (its time and customer from its first row, its total the sum of quantity × price), invoices starting
    /// with "C" are cancellations, times are London local time, "13085.0" is customer 13085. Rows with a
    /// negative price are not line items (Contacts rejects them).
    /// </summary>
    private static List<RfmByHand.Order> OrdersOf(byte[] csv)
    {
        var london = TimeZoneInfo.FindSystemTimeZoneById("Europe/London");
        var orders = new Dictionary<string, (string Customer, DateTime At, decimal Total)>();
        var rows = ParseCsv(Encoding.UTF8.GetString(csv)).ToList();
        var header = rows[0];
        int Col(string name) => Array.IndexOf(header, name);
        int invoice = Col("Invoice"), quantity = Col("Quantity"), date = Col("InvoiceDate"), price = Col("Price"), customer = Col("Customer ID");
        foreach (var row in rows.Skip(1))
        {
            var unitPrice = decimal.Parse(row[price], CultureInfo.InvariantCulture);
            if (unitPrice < 0) continue;
            var amount = decimal.Parse(row[quantity], CultureInfo.InvariantCulture) * unitPrice;
            if (orders.TryGetValue(row[invoice], out var o))
            {
                orders[row[invoice]] = o with { Total = o.Total + amount };
                continue;
            }
            var local = DateTime.ParseExact(row[date], "yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture);
            var id = row[customer].EndsWith(".0", StringComparison.Ordinal) ? row[customer][..^2] : row[customer];
            orders[row[invoice]] = (id, TimeZoneInfo.ConvertTimeToUtc(local, london), amount);
        }
        return orders.Select(o => new RfmByHand.Order(o.Value.Customer, o.Value.At, o.Value.Total, !o.Key.StartsWith('C'))).ToList();
    }

    /// <summary>RFC 4180: fields in double quotes may hold commas and doubled quotes.</summary>
    private static IEnumerable<string[]> ParseCsv(string text)
    {
        var fields = new List<string>();
        var field = new StringBuilder();
        var quoted = false;
        for (var i = 0; i < text.Length; i++)
        {
            var c = text[i];
            if (quoted)
            {
                if (c != '"') field.Append(c);
                else if (i + 1 < text.Length && text[i + 1] == '"') { field.Append('"'); i++; }
                else quoted = false;
            }
            else if (c == '"') quoted = true;
            else if (c == ',') { fields.Add(field.ToString()); field.Clear(); }
            else if (c == '\n')
            {
                fields.Add(field.ToString());
                field.Clear();
                yield return fields.ToArray();
                fields.Clear();
            }
            else if (c != '\r') field.Append(c);
        }
        if (field.Length > 0 || fields.Count > 0) { fields.Add(field.ToString()); yield return fields.ToArray(); }
    }
}
