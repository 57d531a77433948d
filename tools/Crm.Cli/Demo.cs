using System.Globalization;
using System.Text;
using Crm.Contacts.V1;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Grpc.Net.Client;

namespace Crm.Cli;

/// <summary>
/// The demo workspace of `make run`: a Korean shop with a few customers, their consent, a purchase
/// through the API and a generated year of line items through the streamed CSV import.
/// </summary>
public static class Demo
{
    public static async Task RunAsync(Uri contactsUrl, string tenant)
    {
        using var channel = GrpcChannel.ForAddress(contactsUrl);
        var contacts = new ContactsService.ContactsServiceClient(channel);
        var workspaces = new WorkspaceService.WorkspaceServiceClient(channel);
        var auth = new Metadata { { "authorization", "Bearer " + Tokens.Issue(tenant, ["*"]) } };

        var ws = await workspaces.UpdateWorkspaceAsync(new UpdateWorkspaceRequest { Name = "데모 상점 (Demo shop)", DefaultRegion = "KR", TimeZone = "Asia/Seoul" }, auth);
        Console.WriteLine($"workspace {ws.TenantId}: {ws.Name}, phones read as {ws.DefaultRegion}, times in {ws.TimeZone}");

        var minjun = await contacts.UpsertContactAsync(new UpsertContactRequest
        {
            ExternalId = "C-1001", Name = "김민준", Email = "minjun@example.kr", Phone = "010-1234-5678", Locale = "ko-KR",
            TimeZone = "Asia/Seoul", AddTags = { "vip" }, Attributes = { ["grade"] = new AttributeValue { StringValue = "gold" } },
        }, auth);
        Console.WriteLine($"contact {minjun.Contact.ExternalId} {minjun.Contact.Name}: phone {minjun.Contact.Phone} (created: {minjun.Created})");
        await contacts.SetConsentAsync(new SetConsentRequest
        {
            Contact = new ContactRef { ExternalId = "C-1001" }, Channel = Channel.Sms, Purpose = Purpose.Marketing,
            Status = ConsentStatus.OptedIn, Source = ConsentSource.Form, Evidence = "signup form https://shop.example.kr/join",
        }, auth);
        await contacts.RecordTransactionsAsync(new RecordTransactionsRequest
        {
            Orders =
            {
                new Order
                {
                    OrderId = "A-20261123-001", Contact = new ContactRef { ExternalId = "C-1001" },
                    OccurredAt = Timestamp.FromDateTime(DateTime.UtcNow.AddDays(-3)), UtcOffsetMinutes = 540, Currency = "KRW",
                    Status = OrderStatus.Completed,
                    Lines = { new LineItem { Sku = "TEA-01", Name = "유기농 녹차", Category = "tea", Quantity = "2", UnitPrice = "12900" } },
                },
            },
        }, auth);

        var csv = GenerateLineItems(rows: 20_000);
        using var call = contacts.ImportTransactions(auth);
        await call.RequestStream.WriteAsync(new ImportChunk
        {
            Header = new ImportHeader
            {
                FileName = "demo-orders.csv",
                Transactions = new TransactionColumns
                {
                    OrderId = "order_no", CustomerId = "customer_id", OccurredAt = "ordered_at", DateFormat = "yyyy-MM-dd HH:mm:ss",
                    FixedCurrency = "KRW", Sku = "sku", Name = "product", Category = "category", Quantity = "qty", UnitPrice = "price",
                    Status = "status",
                },
            },
        });
        for (var offset = 0; offset < csv.Length; offset += 64 * 1024)
            await call.RequestStream.WriteAsync(new ImportChunk { Data = ByteString.CopyFrom(csv, offset, Math.Min(64 * 1024, csv.Length - offset)) });
        await call.RequestStream.CompleteAsync();
        var import = await call;
        Console.WriteLine($"import {import.ImportId}: {import.RowsAccepted} of {import.RowsRead} rows in, {import.RowsRejected} rejected, " +
                          $"{import.OrdersCreated} orders, {import.ContactsCreated} new customers");
        foreach (var error in import.Errors.Take(3)) Console.WriteLine($"  line {error.Line} ({error.Column}): {error.Reason}");

        var summary = await contacts.GetContactSummaryAsync(new GetContactSummaryRequest { Contact = new ContactRef { ExternalId = "C-1001" } }, auth);
        Console.WriteLine($"C-1001 bought {summary.OrderCount} times, {string.Join(", ", summary.TotalSpend.Select(t => t.Formatted))}, " +
                          $"last on {summary.LastPurchaseAt.ToDateTime():yyyy-MM-dd}");
    }

    /// <summary>A Korean shop's order export: deterministic, with one bad row to show error reporting.</summary>
    private static byte[] GenerateLineItems(int rows)
    {
        var random = new Random(7);
        (string Sku, string Name, string Category, int Price)[] products =
        [
            ("TEA-01", "유기농 녹차", "tea", 12900), ("TEA-02", "제주 말차 라떼", "tea", 8900), ("CUP-01", "도자기 찻잔", "tableware", 25000),
            ("SNK-01", "약과 선물세트", "snack", 19800), ("SNK-02", "현미 누룽지", "snack", 6500), ("GFT-01", "명절 선물세트", "gift", 59000),
        ];
        var sb = new StringBuilder("order_no,customer_id,ordered_at,sku,product,category,qty,price,status\n");
        var written = 0;
        var order = 0;
        var firstDay = DateTime.UtcNow.Date.AddDays(-366); // the past year
        while (written < rows)
        {
            order++;
            var customer = $"C-{1001 + random.Next(800)}";
            var at = firstDay.AddMinutes(random.Next(525_600)).ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture);
            var status = random.Next(40) == 0 ? "refunded" : "completed";
            for (var i = random.Next(1, 5); i > 0 && written < rows; i--, written++)
            {
                var p = products[random.Next(products.Length)];
                sb.Append(CultureInfo.InvariantCulture, $"B-{order:D6},{customer},{at},{p.Sku},{p.Name},{p.Category},{random.Next(1, 4)},{p.Price},{status}\n");
            }
        }
        sb.Append("B-999999,C-1001,yesterday,TEA-01,유기농 녹차,tea,1,12900,completed\n");
        return Encoding.UTF8.GetBytes(sb.ToString());
    }
}
