using System.Text;
using Crm.Contacts.Features;
using Crm.Contacts.Tests.Infrastructure;
using Crm.Contacts.V1;
using Dapper;
using Google.Protobuf;
using Grpc.Core;
using Npgsql;

namespace Crm.Contacts.Tests;

[Collection(ContactsCollection.Name)]
public sealed class ImportTests(ContactsFixture fx)
{
    private static string Slice => File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "data", "online_retail_slice.csv"));

    [Fact]
    public async Task Should_import_real_line_items_as_orders_and_change_nothing_on_reimport()
    {
        var t = ContactsFixture.NewTenant();
        var result = await Imports.TransactionsAsync(fx.Client, fx.As(t), Slice, Imports.OnlineRetail);

        Assert.Equal(ImportStatus.Completed, result.Status);
        Assert.Equal(307, result.RowsRead);
        Assert.Equal(306, result.RowsAccepted);
        Assert.Equal(1, result.RowsRejected);
        var error = Assert.Single(result.Errors);
        Assert.Equal(308, error.Line);
        Assert.Equal("Price", error.Column);
        Assert.Contains("negative", error.Reason);
        Assert.Equal(27, result.OrdersCreated);
        Assert.Equal(20, result.ContactsCreated);
        // Rows without a customer id are guest orders, counted apart (and among orders_created).
        await using (var db = new NpgsqlConnection(fx.ConnectionString))
        {
            var guests = await db.ExecuteScalarAsync<long>("SELECT count(*) FROM orders WHERE tenant_id = @t AND contact_id IS NULL", new { t });
            Assert.InRange(guests, 1, 26);
            Assert.Equal(guests, result.GuestOrdersCreated);
        }
        Assert.Equal(result.GuestOrdersCreated, (await fx.Client.GetImportAsync(new GetImportRequest { ImportId = result.ImportId }, fx.As(t))).GuestOrdersCreated);

        // Customer 13085 ("13085.0" in the file) bought twice: 651.10 GBP, exactly.
        var summary = await fx.Client.GetContactSummaryAsync(new GetContactSummaryRequest { Contact = new ContactRef { ExternalId = "13085" } }, fx.As(t));
        Assert.Equal(2, summary.OrderCount);
        Assert.Equal(new CurrencyTotal { Currency = "GBP", Total = "651.1000", Formatted = "651.10 GBP" }, Assert.Single(summary.TotalSpend));
        var cancelled = await fx.Client.GetContactSummaryAsync(new GetContactSummaryRequest { Contact = new ContactRef { ExternalId = "16321" } }, fx.As(t));
        Assert.Equal(1, cancelled.CancelledCount);

        var orders = await fx.Client.ListTransactionsAsync(new ListTransactionsRequest { Contact = new ContactRef { ExternalId = "13085" } }, fx.As(t));
        var first = orders.Orders.Single(o => o.OrderId == "489434");
        Assert.Equal(8, first.Lines.Count);
        Assert.Equal("85048", first.Lines[0].Sku);
        Assert.Equal("RECORD FRAME 7\" SINGLE SIZE ", first.Lines[3].Name); // RFC 4180 quotes, kept as written
        // 07:45 London time in December is 07:45 UTC.
        Assert.Equal(new DateTime(2009, 12, 1, 7, 45, 0, DateTimeKind.Utc), first.OccurredAt.ToDateTime());

        var before = await CountsAsync(t);
        var again = await Imports.TransactionsAsync(fx.Client, fx.As(t), Slice, Imports.OnlineRetail);
        Assert.Equal(0, again.OrdersCreated);
        Assert.Equal(0, again.ContactsCreated);
        Assert.Equal(before, await CountsAsync(t));
        Assert.Equal((27L, 306L, 3L), before); // 3 line items of guest orders are kept without a contact
    }

    [Fact]
    public async Task Should_not_bring_back_an_erased_customer_when_a_file_is_imported_again()
    {
        var t = ContactsFixture.NewTenant();
        await Imports.TransactionsAsync(fx.Client, fx.As(t), Slice, Imports.OnlineRetail);
        await fx.Client.EraseContactAsync(new EraseContactRequest { Contact = new ContactRef { ExternalId = "13085" } }, fx.As(t));

        // The customer's orders were recorded before, so the import leaves their customer alone.
        var again = await Imports.TransactionsAsync(fx.Client, fx.As(t), Slice, Imports.OnlineRetail);
        Assert.Equal((0L, 0L), (again.OrdersCreated, again.ContactsCreated));
        await using var conn = new NpgsqlConnection(fx.ConnectionString);
        Assert.Equal(0, await conn.ExecuteScalarAsync<long>("SELECT count(*) FROM contacts WHERE tenant_id = @t AND external_id = '13085'", new { t }));
    }

    [Fact]
    public async Task Should_count_the_contacts_an_abandoned_import_created_and_add_its_orders_when_run_again()
    {
        // The client goes away after more than a batch: the orders roll back, the contacts created
        // for new customers stay (committed as created), and the failed import's row counts them.
        var t = ContactsFixture.NewTenant();
        var csv = new StringBuilder("order,customer,when,sku,qty,price\n");
        for (var i = 0; i < 200_000; i++)
            csv.Append(System.Globalization.CultureInfo.InvariantCulture, $"O{i / 2},c{i / 2 % 3000},2026-01-05T10:00:00Z,s{i % 7},1,1\n");
        var data = Encoding.UTF8.GetBytes(csv.ToString());
        var mapping = new TransactionColumns { OrderId = "order", CustomerId = "customer", OccurredAt = "when", Sku = "sku", Quantity = "qty", UnitPrice = "price", FixedCurrency = "KRW" };

        await using var conn = new NpgsqlConnection(fx.ConnectionString);
        using var abandon = new CancellationTokenSource();
        using (var call = fx.Client.ImportTransactions(fx.As(t).WithCancellationToken(abandon.Token)))
        {
            await call.RequestStream.WriteAsync(new ImportChunk { Header = new ImportHeader { FileName = "big.csv", Transactions = mapping } });
            for (var offset = 0; offset < data.Length / 2; offset += 64 * 1024)
                await call.RequestStream.WriteAsync(new ImportChunk { Data = ByteString.CopyFrom(data, offset, Math.Min(64 * 1024, data.Length - offset)) });
            var deadline = DateTime.UtcNow.AddSeconds(30);
            while (await conn.ExecuteScalarAsync<long>("SELECT count(*) FROM contacts WHERE tenant_id = @t", new { t }) == 0)
            {
                Assert.True(DateTime.UtcNow < deadline, "the import created no contacts");
                await Task.Delay(20);
            }
            await abandon.CancelAsync();
        }

        var failed = await WaitForImportAsync(conn, t, "failed");
        Assert.Equal(0, await conn.ExecuteScalarAsync<long>("SELECT count(*) FROM orders WHERE tenant_id = @t", new { t }));
        var contacts = await conn.ExecuteScalarAsync<long>("SELECT count(*) FROM contacts WHERE tenant_id = @t", new { t });
        Assert.InRange(contacts, 1, 3_000);
        Assert.Equal(contacts, failed.ContactsCreated);

        var again = await Imports.SendAsync(fx.Client.ImportTransactions(fx.As(t)), new ImportHeader { FileName = "big.csv", Transactions = mapping }, data, 64 * 1024);
        Assert.Equal(ImportStatus.Completed, again.Status);
        Assert.Equal(100_000, again.OrdersCreated);
        Assert.Equal(3_000 - contacts, again.ContactsCreated);
    }

    private static async Task<(string Status, long ContactsCreated)> WaitForImportAsync(NpgsqlConnection conn, string tenant, string status)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (true)
        {
            var row = await conn.QuerySingleOrDefaultAsync<(string Status, long ContactsCreated)?>(
                "SELECT status, contacts_created FROM imports WHERE tenant_id = @tenant ORDER BY started_at DESC LIMIT 1", new { tenant });
            if (row is { } r && r.Status == status) return r;
            Assert.True(DateTime.UtcNow < deadline, $"the import did not become {status}");
            await Task.Delay(50);
        }
    }

    [Fact]
    public async Task Should_report_bad_rows_with_line_and_reason_while_good_rows_go_in()
    {
        var t = ContactsFixture.NewTenant();
        var csv = """
            order,customer,when,sku,name,qty,price
            A1,c1,2026-01-05T10:00:00+09:00,S1,"멀티라인
            상품명",1,1000
            A1,c1,2026-01-05T10:00:00+09:00,S2,"쉼표, 포함",2,500.5
            A2,c2,yesterday,S1,x,1,1000
            A3,c2,2026-01-06T10:00:00+09:00,S1,x,one,1000
            A4,c2,2026-01-06T10:00:00+09:00,S1,x,1
            ,c3,2026-01-06T10:00:00+09:00,S1,x,1,1000
            A5,c3,2026-01-07 09:30:00,S3,,1,20000
            A6,c4,2026-01-07T10:00:00Z,S1,"unterminated,1,1000
            """.Replace("\r\n", "\n");
        var mapping = new TransactionColumns
        {
            OrderId = "order", CustomerId = "customer", OccurredAt = "when", Sku = "sku", Name = "name",
            Quantity = "qty", UnitPrice = "price", FixedCurrency = "KRW",
        };
        var result = await Imports.TransactionsAsync(fx.Client, fx.As(t), csv, mapping);
        Assert.Equal(ImportStatus.Completed, result.Status);
        Assert.Equal(8, result.RowsRead);
        Assert.Equal(3, result.RowsAccepted);
        Assert.Equal(
            [(5L, "when"), (6L, "qty"), (7L, ""), (8L, "order"), (10L, "")],
            result.Errors.Select(e => (e.Line, e.Column)).ToList());
        Assert.Contains("'yesterday'", result.Errors[0].Reason);
        Assert.Contains("expected 7 columns, found 6", result.Errors[2].Reason);
        Assert.Contains("not closed", result.Errors[4].Reason);

        var a1 = (await fx.Client.ListTransactionsAsync(new ListTransactionsRequest { Contact = new ContactRef { ExternalId = "c1" } }, fx.As(t))).Orders.Single();
        Assert.Equal("2001.0000", a1.Total);
        Assert.Equal("멀티라인\n상품명", a1.Lines[0].Name);
        Assert.Equal(540, a1.UtcOffsetMinutes);
        // A local time without offset is read in the workspace's zone (Asia/Seoul by default).
        var a5 = (await fx.Client.ListTransactionsAsync(new ListTransactionsRequest { Contact = new ContactRef { ExternalId = "c3" } }, fx.As(t))).Orders.Single();
        Assert.Equal(new DateTime(2026, 1, 7, 0, 30, 0, DateTimeKind.Utc), a5.OccurredAt.ToDateTime());

        var errors = await fx.Client.ListImportErrorsAsync(new ListImportErrorsRequest { ImportId = result.ImportId, PageSize = 2 }, fx.As(t));
        Assert.Equal(2, errors.Errors.Count);
        Assert.NotEmpty(errors.NextPageToken);
    }

    [Theory]
    [InlineData("1", "0", "0")]
    [InlineData("-12", "26.7833", "-321.3996")] // a cancellation: returns have negative quantities
    [InlineData("1", "12345678.9012", "12345678.9012")]
    [InlineData("1", "0.0001", "0.0001")]
    [InlineData("3", "10000", "30000")]
    [InlineData("7", "99999999.99", "699999999.93")]
    public async Task Should_keep_imported_totals_exact(string quantity, string unitPrice, string expectedTotal)
    {
        var t = ContactsFixture.NewTenant();
        var csv = $"order,customer,when,sku,qty,price\nN1,c1,2026-01-05T10:00:00Z,S1,{quantity},{unitPrice}\n";
        var mapping = new TransactionColumns { OrderId = "order", CustomerId = "customer", OccurredAt = "when", Sku = "sku", Quantity = "qty", UnitPrice = "price", FixedCurrency = "KRW" };
        var result = await Imports.TransactionsAsync(fx.Client, fx.As(t), csv, mapping);
        Assert.Equal(1, result.OrdersCreated);
        var order = (await fx.Client.ListTransactionsAsync(new ListTransactionsRequest { Contact = new ContactRef { ExternalId = "c1" } }, fx.As(t))).Orders.Single();
        Assert.Equal(decimal.Parse(expectedTotal, System.Globalization.CultureInfo.InvariantCulture),
            decimal.Parse(order.Total, System.Globalization.CultureInfo.InvariantCulture));
        Assert.Equal(unitPrice, order.Lines[0].UnitPrice);
    }

    [Fact]
    public async Task Should_gather_the_rows_of_an_order_wherever_they_are_in_the_file()
    {
        // Order A's items are at the start, in the middle and at the end of a file longer than the
        // import's batches (65,536 rows): they are gathered into one order, within a batch and across
        // batches, with its total and items exact; re-importing changes nothing.
        var t = ContactsFixture.NewTenant();
        var csv = new StringBuilder("order,customer,when,sku,qty,price\n");
        csv.Append("A,buyer-a,2026-01-05T10:00:00Z,first,1,0.10\n");
        for (var i = 0; i < 140_000; i++)
        {
            csv.Append(System.Globalization.CultureInfo.InvariantCulture, $"B{i / 4},c{i % 500},2026-01-05T10:00:00Z,s{i % 7},1,1\n");
            if (i == 10) csv.Append("A,buyer-a,2026-01-05T10:00:00Z,second,2,0.20\n");
        }
        csv.Append("A,buyer-a,2026-01-05T10:00:00Z,third,3,0.30\n");
        var mapping = new TransactionColumns { OrderId = "order", CustomerId = "customer", OccurredAt = "when", Sku = "sku", Quantity = "qty", UnitPrice = "price", FixedCurrency = "KRW" };

        var result = await Imports.TransactionsAsync(fx.Client, fx.As(t), csv.ToString(), mapping);
        Assert.Equal(ImportStatus.Completed, result.Status);
        Assert.Equal(140_003, result.RowsAccepted);
        Assert.Equal(35_001, result.OrdersCreated);
        var order = (await fx.Client.ListTransactionsAsync(new ListTransactionsRequest { Contact = new ContactRef { ExternalId = "buyer-a" } }, fx.As(t))).Orders.Single();
        Assert.Equal(["first", "second", "third"], order.Lines.Select(l => l.Sku));
        Assert.Equal(1.4m, decimal.Parse(order.Total, System.Globalization.CultureInfo.InvariantCulture));

        // TransactionsRecorded announces A when it is created and again with its later items; an order's skus are distinct.
        List<Crm.Contracts.Contacts.RecordedOrder> announced;
        await using (var conn = new NpgsqlConnection(fx.ConnectionString))
        {
            announced = (await conn.QueryAsync<string>(
                "SELECT payload FROM outbox_messages WHERE message_type LIKE 'Crm.Contracts.Contacts.TransactionsRecorded%' AND payload::json->>'tenantId' = @t ORDER BY id", new { t }))
                .SelectMany(p => System.Text.Json.JsonSerializer.Deserialize<Crm.Contracts.Contacts.TransactionsRecorded>(p, Crm.BuildingBlocks.Outbox.Outbox.Json)!.Orders)
                .ToList();
        }
        Assert.Equal(35_001, announced.Select(o => o.OrderId).Distinct().Count());
        var a = announced.Where(o => o.OrderId == "A").ToList();
        Assert.Equal([0.5m, 1.4m], a.Select(o => o.Total));
        Assert.Equal(["first", "second"], a[0].Skus);
        Assert.Equal(["first", "second", "third"], a[1].Skus.Order());
        Assert.Equal(order.ContactId, a[0].ContactId.ToString());
        Assert.Equal(new DateTimeOffset(2026, 1, 5, 10, 0, 0, TimeSpan.Zero), a[0].OccurredAt);
        var b0 = announced.Single(o => o.OrderId == "B0");
        Assert.Equal(["s0", "s1", "s2", "s3"], b0.Skus);
        Assert.Equal("KRW", b0.Currency);
        Assert.Equal("completed", b0.Status);

        var again = await Imports.TransactionsAsync(fx.Client, fx.As(t), csv.ToString(), mapping);
        Assert.Equal(0, again.OrdersCreated);
        order = (await fx.Client.ListTransactionsAsync(new ListTransactionsRequest { Contact = new ContactRef { ExternalId = "buyer-a" } }, fx.As(t))).Orders.Single();
        Assert.Equal(3, order.Lines.Count);
    }

    [Fact]
    public async Task Should_announce_each_sku_of_an_order_once_when_its_items_are_apart()
    {
        var t = ContactsFixture.NewTenant();
        const string csv = "order,customer,when,sku,qty,price\nR,c1,2026-01-05T10:00:00Z,x,1,1\nS,c2,2026-01-05T10:00:00Z,y,1,1\nR,c1,2026-01-05T10:00:00Z,x,2,1\n";
        var mapping = new TransactionColumns { OrderId = "order", CustomerId = "customer", OccurredAt = "when", Sku = "sku", Quantity = "qty", UnitPrice = "price", FixedCurrency = "KRW" };
        Assert.Equal(2, (await Imports.TransactionsAsync(fx.Client, fx.As(t), csv, mapping)).OrdersCreated);

        await using var conn = new NpgsqlConnection(fx.ConnectionString);
        var r = (await conn.QueryAsync<string>(
                "SELECT payload FROM outbox_messages WHERE message_type LIKE 'Crm.Contracts.Contacts.TransactionsRecorded%' AND payload::json->>'tenantId' = @t", new { t }))
            .SelectMany(p => System.Text.Json.JsonSerializer.Deserialize<Crm.Contracts.Contacts.TransactionsRecorded>(p, Crm.BuildingBlocks.Outbox.Outbox.Json)!.Orders)
            .Single(o => o.OrderId == "R");
        Assert.Equal(["x"], r.Skus);
        Assert.Equal(3m, r.Total);
    }

    [Fact]
    public async Task Should_add_only_the_new_orders_of_a_file_that_extends_one_imported_before()
    {
        // The second file repeats the first one's orders and adds ten with new customers: only those
        // are created, each order pointing at a contact that exists.
        var t = ContactsFixture.NewTenant();
        static string File(int orders) => "order,customer,when,sku,qty,price\n" +
            string.Concat(Enumerable.Range(1, orders).Select(i => $"O{i},cust-{i},2026-01-05T10:00:00Z,s,1,1\n"));
        var mapping = new TransactionColumns { OrderId = "order", CustomerId = "customer", OccurredAt = "when", Sku = "sku", Quantity = "qty", UnitPrice = "price", FixedCurrency = "KRW" };

        var first = await Imports.TransactionsAsync(fx.Client, fx.As(t), File(10), mapping);
        Assert.Equal((10L, 10L), (first.OrdersCreated, first.ContactsCreated));
        var second = await Imports.TransactionsAsync(fx.Client, fx.As(t), File(20), mapping);
        Assert.Equal(ImportStatus.Completed, second.Status);
        Assert.Equal((10L, 10L), (second.OrdersCreated, second.ContactsCreated));

        await using var conn = new NpgsqlConnection(fx.ConnectionString);
        var (orders, contacts, orphans) = await conn.QuerySingleAsync<(long, long, long)>("""
            SELECT (SELECT count(*) FROM orders WHERE tenant_id = @t),
                   (SELECT count(*) FROM contacts WHERE tenant_id = @t),
                   (SELECT count(*) FROM orders o WHERE o.tenant_id = @t
                      AND NOT EXISTS (SELECT 1 FROM contacts c WHERE c.tenant_id = o.tenant_id AND c.contact_id = o.contact_id))
            """, new { t });
        Assert.Equal((20L, 20L, 0L), (orders, contacts, orphans));
    }

    [Fact]
    public async Task Should_skip_the_orders_recorded_before_when_their_ids_straddle_many_others()
    {
        // O5 and O15 span (in byte order) O15…O19, O2, O20, O3…O5: more recorded orders than the batch has
        // ids, so they are probed one by one rather than through the range; only O150 is new.
        var t = ContactsFixture.NewTenant();
        static string File(IEnumerable<string> orders) => "order,customer,when,sku,qty,price\n" +
            string.Concat(orders.Select(o => $"{o},cust-{o},2026-01-05T10:00:00Z,s,1,1\n"));
        var mapping = new TransactionColumns { OrderId = "order", CustomerId = "customer", OccurredAt = "when", Sku = "sku", Quantity = "qty", UnitPrice = "price", FixedCurrency = "KRW" };

        var first = await Imports.TransactionsAsync(fx.Client, fx.As(t), File(Enumerable.Range(1, 20).Select(i => $"O{i}")), mapping);
        Assert.Equal(20L, first.OrdersCreated);
        var second = await Imports.TransactionsAsync(fx.Client, fx.As(t), File(["O5", "O150", "O15"]), mapping);
        Assert.Equal(ImportStatus.Completed, second.Status);
        Assert.Equal((1L, 1L), (second.OrdersCreated, second.ContactsCreated));
    }

    [Fact]
    public async Task Should_name_the_mapping_field_when_a_column_is_missing()
    {
        var t = ContactsFixture.NewTenant();
        var mapping = Imports.OnlineRetail;
        mapping.Sku = "Product Code";
        var ex = await Assert.ThrowsAsync<RpcException>(() => Imports.TransactionsAsync(fx.Client, fx.As(t), Slice, mapping));
        Assert.Equal(StatusCode.InvalidArgument, ex.StatusCode);
        Assert.Contains("header.transactions.sku", Rpc.ViolatedFields(ex.GetRpcStatus()));
    }

    [Fact]
    public async Task Should_import_contacts_idempotently_with_korean_numbers_and_typed_attributes()
    {
        var t = ContactsFixture.NewTenant();
        var csv = """
            customer_id,name,email,phone,tags,points,vip,joined
            1001,김민준,minjun@example.kr,010-1234-5678,vip;seoul,1200,true,2024-03-01
            1002,이서연,seoyeon@example.kr,02-123-4567,busan,30,false,2025-01-15
            1003,박지훈,not-an-email,010-2000-0000,,5,no,2025-02-01
            1004,최수아,sua@example.kr,12345,,5,no,2025-02-01
            1005,정하은,haeun@example.kr,,,abc,yes,2025-02-01
            """.Replace("\r\n", "\n");
        var mapping = new ContactColumns
        {
            ExternalId = "customer_id", Name = "name", Email = "email", Phone = "phone", Tags = "tags",
            Attributes =
            {
                new AttributeColumn { Column = "points", Attribute = "points", Type = AttributeType.Number },
                new AttributeColumn { Column = "vip", Attribute = "vip", Type = AttributeType.Boolean },
                new AttributeColumn { Column = "joined", Attribute = "joined_at", Type = AttributeType.Date },
            },
        };
        var result = await Imports.ContactsAsync(fx.Client, fx.As(t), csv, mapping);
        Assert.Equal(2, result.ContactsCreated);
        Assert.Equal([(4L, "email"), (5L, "phone"), (6L, "points")], result.Errors.Select(e => (e.Line, e.Column)).ToList());

        var minjun = await fx.Client.GetContactAsync(new GetContactRequest { Contact = new ContactRef { ExternalId = "1001" } }, fx.As(t));
        Assert.Equal("+821012345678", minjun.Phone);
        Assert.Equal(["seoul", "vip"], minjun.Tags);
        Assert.Equal(1200, minjun.Attributes["points"].NumberValue);
        Assert.True(minjun.Attributes["vip"].BoolValue);
        Assert.Equal(new DateTime(2024, 3, 1, 0, 0, 0, DateTimeKind.Utc), minjun.Attributes["joined_at"].DateValue.ToDateTime());

        var again = await Imports.ContactsAsync(fx.Client, fx.As(t), csv, mapping);
        Assert.Equal((0L, 0L), (again.ContactsCreated, again.ContactsUpdated));
        var changed = await Imports.ContactsAsync(fx.Client, fx.As(t), csv.Replace("1200", "1300"), mapping);
        Assert.Equal((0L, 1L), (changed.ContactsCreated, changed.ContactsUpdated));
    }

    [Fact]
    public async Task Should_show_progress_while_an_import_runs()
    {
        var t = ContactsFixture.NewTenant();
        var rows = new StringBuilder("order,customer,when,sku,qty,price\n");
        for (var i = 0; i < 20_000; i++) rows.Append(System.Globalization.CultureInfo.InvariantCulture, $"P{i / 4},c{i % 500},2026-01-05T10:00:00Z,S{i % 7},1,{i % 90 + 1}\n");
        var data = Encoding.UTF8.GetBytes(rows.ToString());
        var mapping = new TransactionColumns { OrderId = "order", CustomerId = "customer", OccurredAt = "when", Sku = "sku", Quantity = "qty", UnitPrice = "price", FixedCurrency = "KRW" };

        using var call = fx.Client.ImportTransactions(fx.As(t));
        await call.RequestStream.WriteAsync(new ImportChunk { Header = new ImportHeader { FileName = "big.csv", Transactions = mapping } });
        var half = data.Length / 2;
        await call.RequestStream.WriteAsync(new ImportChunk { Data = ByteString.CopyFrom(data, 0, half) });
        var importId = (await call.ResponseHeadersAsync).GetValue(ContactsGrpcService.ImportIdHeader)!;

        Import progress;
        var deadline = DateTime.UtcNow.AddSeconds(20);
        do
        {
            await Task.Delay(600);
            // Any further row after the progress interval flushes the counters.
            progress = await fx.Client.GetImportAsync(new GetImportRequest { ImportId = importId }, fx.As(t));
        } while (progress.RowsRead == 0 && DateTime.UtcNow < deadline);
        Assert.Equal(ImportStatus.Running, progress.Status);
        Assert.InRange(progress.RowsRead, 1, 19_999);
        // The import's transaction began before this moment (it has read rows), and it cannot end before it.
        var midway = DateTime.UtcNow;

        await call.RequestStream.WriteAsync(new ImportChunk { Data = ByteString.CopyFrom(data, half, data.Length - half) });
        await call.RequestStream.CompleteAsync();
        var done = await call;
        Assert.Equal(ImportStatus.Completed, done.Status);
        Assert.Equal(20_000, done.RowsAccepted);
        Assert.Equal(5_000, done.OrdersCreated);
        Assert.True(done.FinishedAt.ToDateTime() >= midway, $"finished at {done.FinishedAt}, before the last rows were sent at {midway:O}");
        Assert.Equal(done.FinishedAt, (await fx.Client.GetImportAsync(new GetImportRequest { ImportId = importId }, fx.As(t))).FinishedAt);

        // Other tenants cannot see the import.
        await Rpc.FailsWith(StatusCode.NotFound, () => fx.Client.GetImportAsync(new GetImportRequest { ImportId = importId }, fx.As(ContactsFixture.NewTenant())).ResponseAsync);
    }

    [Fact]
    public async Task Should_analyse_orders_after_an_import_that_grows_them_substantially()
    {
        // Right after a large load the planner still sees the table as it was: the import analyses it.
        // last_analyze moves only for a manual ANALYZE (autovacuum's is last_autoanalyze).
        await using var conn = new NpgsqlConnection(fx.ConnectionString);
        var before = await conn.QuerySingleAsync<(DateTime? LastAnalyze, double Tuples)>("""
            SELECT s.last_analyze, greatest(c.reltuples, 0)::float8 FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid WHERE s.relname = 'orders'
            """);
        // More than the function's threshold: a tenth of the table and at least 10,000 orders.
        var orders = (int)Math.Max(12_000, before.Tuples * 0.2 + 2_000);
        var t = ContactsFixture.NewTenant();
        var csv = new StringBuilder("order,customer,when,sku,qty,price\n");
        for (var i = 0; i < orders; i++) csv.Append(System.Globalization.CultureInfo.InvariantCulture, $"A{i},c{i % 700},2026-01-05T10:00:00Z,s{i % 7},1,2\n");
        var mapping = new TransactionColumns { OrderId = "order", CustomerId = "customer", OccurredAt = "when", Sku = "sku", Quantity = "qty", UnitPrice = "price", FixedCurrency = "KRW" };
        var result = await Imports.SendAsync(fx.Client.ImportTransactions(fx.As(t)), new ImportHeader { FileName = "grow.csv", Transactions = mapping },
            Encoding.UTF8.GetBytes(csv.ToString()), 64 * 1024);
        Assert.Equal(orders, result.OrdersCreated);

        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (true)
        {
            var after = await conn.QuerySingleAsync<(DateTime? LastAnalyze, double Tuples)>("""
                SELECT s.last_analyze, c.reltuples::float8 FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid WHERE s.relname = 'orders'
                """);
            if (after.LastAnalyze > (before.LastAnalyze ?? DateTime.MinValue))
            {
                Assert.True(after.Tuples >= before.Tuples + orders * 0.5, $"reltuples {after.Tuples} after adding {orders} to {before.Tuples}");
                break;
            }
            Assert.True(DateTime.UtcNow < deadline, "orders was not analysed after the import");
            await Task.Delay(100);
        }
    }

    private async Task<(long Orders, long Lines, long AnonymousLines)> CountsAsync(string tenant)
    {
        await using var conn = new NpgsqlConnection(fx.ConnectionString);
        return await conn.QuerySingleAsync<(long, long, long)>("""
            SELECT count(*),
                   coalesce(sum(json_array_length(lines)), 0)::bigint,
                   coalesce(sum(json_array_length(lines)) FILTER (WHERE contact_id IS NULL), 0)::bigint
            FROM orders WHERE tenant_id = @tenant
            """, new { tenant });
    }
}
