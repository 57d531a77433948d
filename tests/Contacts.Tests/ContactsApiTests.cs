using System.Net;
using Crm.Contacts.Tests.Infrastructure;
using Crm.Contacts.V1;
using Crm.TestSupport;
using Crm.BuildingBlocks.Tenancy;
using Dapper;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Npgsql;

namespace Crm.Contacts.Tests;

[Collection(ContactsCollection.Name)]
public sealed class ContactsApiTests(ContactsFixture fx)
{
    private ContactsService.ContactsServiceClient Client => fx.Client;

    [Fact]
    public async Task Should_upsert_idempotently_and_normalise_korean_phone()
    {
        var t = ContactsFixture.NewTenant();
        var request = new UpsertContactRequest
        {
            ExternalId = "cust-1",
            Name = "김민준",
            Email = "MinJun@Example.COM",
            Phone = "010-1234-5678",
            TimeZone = "Asia/Seoul",
            Locale = "ko-KR",
            Attributes = { ["vip"] = new AttributeValue { BoolValue = true }, ["points"] = new AttributeValue { NumberValue = 1200 } },
            AddTags = { "newsletter" },
        };
        var first = await Client.UpsertContactAsync(request, fx.As(t));
        Assert.True(first.Created);
        Assert.Equal("+821012345678", first.Contact.Phone);
        Assert.Equal("MinJun@example.com", first.Contact.Email);
        Assert.Equal("김민준", first.Contact.Name);
        Assert.True(first.Contact.Attributes["vip"].BoolValue);

        var second = await Client.UpsertContactAsync(request, fx.As(t));
        Assert.False(second.Created);
        Assert.False(second.Changed);
        Assert.Equal(first.Contact.Id, second.Contact.Id);
        Assert.Equal(first.Contact.UpdatedAt, second.Contact.UpdatedAt);

        var partial = await Client.UpsertContactAsync(new UpsertContactRequest { ExternalId = "cust-1", Locale = "en-US" }, fx.As(t));
        Assert.True(partial.Changed);
        Assert.Equal("en-US", partial.Contact.Locale);
        Assert.Equal("+821012345678", partial.Contact.Phone); // untouched

        var got = await Client.GetContactAsync(new GetContactRequest { Contact = new ContactRef { ExternalId = "cust-1" } }, fx.As(t));
        Assert.Equal(first.Contact.Id, got.Id);
        Assert.Equal(["newsletter"], got.Tags);
    }

    [Fact]
    public async Task Should_reject_invalid_phone_and_email_naming_the_fields()
    {
        var t = ContactsFixture.NewTenant();
        var status = await Rpc.FailsWith(StatusCode.InvalidArgument, () => Client.UpsertContactAsync(
            new UpsertContactRequest { ExternalId = "x", Phone = "010-12", Email = "not-an-email" }, fx.As(t)).ResponseAsync);
        Assert.Contains("phone", Rpc.ViolatedFields(status));
        Assert.Contains("email", Rpc.ViolatedFields(status));
        await Rpc.FailsWith(StatusCode.NotFound, () => Client.GetContactAsync(
            new GetContactRequest { Contact = new ContactRef { ExternalId = "x" } }, fx.As(t)).ResponseAsync);
    }

    [Fact]
    public async Task Should_use_the_workspace_default_region_for_national_numbers()
    {
        var t = ContactsFixture.NewTenant();
        await fx.Workspaces.UpdateWorkspaceAsync(new UpdateWorkspaceRequest { DefaultRegion = "GB", TimeZone = "Europe/London" }, fx.As(t));
        var c = await Client.UpsertContactAsync(new UpsertContactRequest { ExternalId = "uk", Phone = "07400 123456" }, fx.As(t));
        Assert.Equal("+447400123456", c.Contact.Phone);
        var intl = await Client.UpsertContactAsync(new UpsertContactRequest { ExternalId = "kr", Phone = "+82 10-2000-0000" }, fx.As(t));
        Assert.Equal("+821020000000", intl.Contact.Phone);
    }

    [Fact]
    public async Task Should_never_let_one_tenant_read_or_change_anothers_contacts()
    {
        var a = ContactsFixture.NewTenant();
        var b = ContactsFixture.NewTenant();
        var contact = (await Client.UpsertContactAsync(new UpsertContactRequest { ExternalId = "shared-id", Name = "A's customer" }, fx.As(a))).Contact;

        await Rpc.FailsWith(StatusCode.NotFound, () => Client.GetContactAsync(
            new GetContactRequest { Contact = new ContactRef { Id = contact.Id } }, fx.As(b)).ResponseAsync);
        await Rpc.FailsWith(StatusCode.NotFound, () => Client.EraseContactAsync(
            new EraseContactRequest { Contact = new ContactRef { Id = contact.Id } }, fx.As(b)).ResponseAsync);
        await Rpc.FailsWith(StatusCode.NotFound, () => Client.SetConsentAsync(new SetConsentRequest
        {
            Contact = new ContactRef { Id = contact.Id }, Channel = Channel.Sms, Purpose = Purpose.Marketing,
            Status = ConsentStatus.OptedIn, Source = ConsentSource.Api,
        }, fx.As(b)).ResponseAsync);

        // The same external id in B is B's own, separate contact.
        var bs = await Client.UpsertContactAsync(new UpsertContactRequest { ExternalId = "shared-id", Name = "B's customer" }, fx.As(b));
        Assert.True(bs.Created);
        Assert.NotEqual(contact.Id, bs.Contact.Id);
        var listA = await Client.ListContactsAsync(new ListContactsRequest(), fx.As(a));
        Assert.Equal("A's customer", Assert.Single(listA.Contacts).Name);
    }

    [Fact]
    public async Task Should_refuse_calls_without_a_valid_token_or_scope()
    {
        await Rpc.FailsWith(StatusCode.Unauthenticated, () => Client.ListContactsAsync(new ListContactsRequest()).ResponseAsync);
        var forged = new Metadata { { "authorization", "Bearer " + TestTokenKeys.Generate("unknown-key").Issuer().Issue("evil", ["*"]) } };
        await Rpc.FailsWith(StatusCode.Unauthenticated, () => Client.ListContactsAsync(new ListContactsRequest(), forged).ResponseAsync);
        await Rpc.FailsWith(StatusCode.PermissionDenied, () => Client.UpsertContactAsync(
            new UpsertContactRequest { ExternalId = "x" }, fx.As(ContactsFixture.NewTenant(), Scope.ContactsRead)).ResponseAsync);
    }

    [Fact]
    public async Task Should_page_through_contacts_with_filters()
    {
        var t = ContactsFixture.NewTenant();
        for (var i = 0; i < 7; i++)
            await Client.UpsertContactAsync(new UpsertContactRequest { ExternalId = $"c{i:D2}", AddTags = { i % 2 == 0 ? "even" : "odd" } }, fx.As(t));
        var seen = new List<string>();
        string token = "";
        do
        {
            var page = await Client.ListContactsAsync(new ListContactsRequest { PageSize = 3, PageToken = token, Tag = "even" }, fx.As(t));
            seen.AddRange(page.Contacts.Select(c => c.ExternalId));
            token = page.NextPageToken;
        } while (token.Length > 0);
        Assert.Equal(["c00", "c02", "c04", "c06"], seen);
    }

    [Fact]
    public async Task Should_keep_consent_as_append_only_history()
    {
        var t = ContactsFixture.NewTenant();
        var c = (await Client.UpsertContactAsync(new UpsertContactRequest { ExternalId = "consenting" }, fx.As(t))).Contact;
        var reference = new ContactRef { Id = c.Id };
        var optIn = DateTime.UtcNow.AddDays(-10);
        var set = await Client.SetConsentAsync(new SetConsentRequest
        {
            Contact = reference, Channel = Channel.Sms, Purpose = Purpose.Marketing, Status = ConsentStatus.OptedIn,
            Source = ConsentSource.Form, Evidence = "https://shop.example/signup ip=203.0.113.7", OccurredAt = Timestamp.FromDateTime(optIn),
        }, fx.As(t));
        Assert.True(set.Changed);
        Assert.Equal(set.Consent.ConsentedAt.ToDateTime().AddDays(730), set.Consent.ReconfirmDueAt.ToDateTime());
        Assert.True(Math.Abs((set.Consent.ConsentedAt.ToDateTime() - optIn).TotalMilliseconds) < 1);

        await Client.SetConsentAsync(new SetConsentRequest
        {
            Contact = reference, Channel = Channel.Sms, Purpose = Purpose.Marketing, Status = ConsentStatus.OptedOut,
            Source = ConsentSource.StopReply, Evidence = "SMS 'STOP' SM123",
        }, fx.As(t));
        // A late, older opt-in (e.g. a delayed import) is kept as proof but does not override the newer opt-out.
        var late = await Client.SetConsentAsync(new SetConsentRequest
        {
            Contact = reference, Channel = Channel.Sms, Purpose = Purpose.Marketing, Status = ConsentStatus.OptedIn,
            Source = ConsentSource.Import, OccurredAt = Timestamp.FromDateTime(optIn.AddDays(1)),
        }, fx.As(t));
        Assert.False(late.Changed);
        Assert.Equal(ConsentStatus.OptedOut, late.Consent.Status);

        await Client.SetConsentAsync(new SetConsentRequest
        {
            Contact = reference, Channel = Channel.Sms, Purpose = Purpose.MarketingNight, Status = ConsentStatus.OptedIn, Source = ConsentSource.Form,
        }, fx.As(t));

        var history = await Client.ListConsentHistoryAsync(new ListConsentHistoryRequest { Contact = reference }, fx.As(t));
        Assert.Equal([ConsentSource.Form, ConsentSource.StopReply, ConsentSource.Import, ConsentSource.Form], history.Entries.Select(e => e.Source));
        Assert.Equal("SMS 'STOP' SM123", history.Entries[1].Evidence);

        var contact = await Client.GetContactAsync(new GetContactRequest { Contact = reference }, fx.As(t));
        Assert.Equal(ConsentStatus.OptedOut, contact.Consents.Single(s => s.Purpose == Purpose.Marketing).Status);
        Assert.Equal(ConsentStatus.OptedIn, contact.Consents.Single(s => s.Purpose == Purpose.MarketingNight).Status);

        await Rpc.FailsWith(StatusCode.InvalidArgument, () => Client.SetConsentAsync(
            new SetConsentRequest { Contact = reference, Channel = Channel.Sms }, fx.As(t)).ResponseAsync);
    }

    [Fact]
    public async Task Should_record_transactions_idempotently_and_summarise_in_decimal()
    {
        var t = ContactsFixture.NewTenant();
        var at = new DateTime(2026, 3, 1, 3, 0, 0, DateTimeKind.Utc);
        Order NewOrder(string id, params (string Sku, string Qty, string Price)[] lines)
        {
            var o = new Order
            {
                OrderId = id, Contact = new ContactRef { ExternalId = "buyer-1" }, OccurredAt = Timestamp.FromDateTime(at),
                UtcOffsetMinutes = 540, Currency = "KRW", Status = OrderStatus.Completed,
            };
            o.Lines.AddRange(lines.Select(l => new LineItem { Sku = l.Sku, Name = "상품", Category = "beauty", Quantity = l.Qty, UnitPrice = l.Price }));
            return o;
        }
        var request = new RecordTransactionsRequest
        {
            Orders = { NewOrder("o-1", ("sku-a", "2", "0.1"), ("sku-b", "1", "0.2")), NewOrder("o-2", ("sku-a", "3", "12900")) },
        };
        var first = await Client.RecordTransactionsAsync(request, fx.As(t));
        Assert.Equal(2, first.Recorded);
        var again = await Client.RecordTransactionsAsync(request, fx.As(t));
        Assert.Equal(0, again.Recorded);
        Assert.Equal(2, again.Unchanged);

        // The purchase created the contact (transactions first).
        var buyer = new ContactRef { ExternalId = "buyer-1" };
        var summary = await Client.GetContactSummaryAsync(new GetContactSummaryRequest { Contact = buyer }, fx.As(t));
        Assert.Equal(2, summary.OrderCount);
        Assert.Equal("38700.4000", Assert.Single(summary.TotalSpend).Total); // 0.2 + 0.2 + 38700, exactly
        Assert.Equal("38,700 KRW", summary.TotalSpend[0].Formatted); // the won has no minor unit

        var refund = NewOrder("o-2", ("sku-a", "3", "12900"));
        refund.Status = OrderStatus.Refunded;
        var refunded = await Client.RecordTransactionsAsync(new RecordTransactionsRequest { Orders = { refund } }, fx.As(t));
        Assert.Equal(1, refunded.StatusChanged);
        summary = await Client.GetContactSummaryAsync(new GetContactSummaryRequest { Contact = buyer }, fx.As(t));
        Assert.Equal(1, summary.OrderCount);
        Assert.Equal(1, summary.RefundedCount);
        Assert.Equal("0.4000", summary.TotalSpend[0].Total);

        var list = await Client.ListTransactionsAsync(new ListTransactionsRequest { Contact = buyer, PageSize = 1 }, fx.As(t));
        Assert.Single(list.Orders);
        Assert.NotEmpty(list.NextPageToken);
        var next = await Client.ListTransactionsAsync(new ListTransactionsRequest { Contact = buyer, PageSize = 1, PageToken = list.NextPageToken }, fx.As(t));
        Assert.NotEqual(list.Orders[0].OrderId, Assert.Single(next.Orders).OrderId);
        Assert.Equal(540, next.Orders[0].UtcOffsetMinutes);

        // Segments read the stored items by name in SQL.
        await using (var conn = new NpgsqlConnection(fx.ConnectionString))
        {
            var items = (await conn.QueryAsync<(int LineNo, string Sku, string Name, string Category, decimal Quantity, decimal UnitPrice)>(
                "SELECT l.* FROM orders o, order_lines(o.lines) l WHERE o.tenant_id = @t AND o.order_id = 'o-1' ORDER BY l.line_no", new { t })).ToList();
            Assert.Equal([(1, "sku-a", "상품", "beauty", 2m, 0.1m), (2, "sku-b", "상품", "beauty", 1m, 0.2m)], items);
        }

        var bad = await Rpc.FailsWith(StatusCode.InvalidArgument, () => Client.RecordTransactionsAsync(new RecordTransactionsRequest
        {
            Orders = { new Order { OrderId = "o-3", Currency = "KRWX", Lines = { new LineItem { Sku = "x", Quantity = "1", UnitPrice = "1,000" } } } },
        }, fx.As(t)).ResponseAsync);
        Assert.Contains("orders[0].currency", Rpc.ViolatedFields(bad));
        Assert.Contains("orders[0].occurred_at", Rpc.ViolatedFields(bad));
        Assert.Contains("orders[0].lines[0].unit_price", Rpc.ViolatedFields(bad));
    }

    [Fact]
    public async Task Should_erase_personal_data_keep_purchases_anonymised_and_suppress_reimport()
    {
        var t = ContactsFixture.NewTenant();
        var c = (await Client.UpsertContactAsync(new UpsertContactRequest
        {
            ExternalId = "forget-me", Name = "이서연", Email = "seoyeon@example.kr", Phone = "01020000000",
        }, fx.As(t))).Contact;
        await Client.RecordTransactionsAsync(new RecordTransactionsRequest
        {
            Orders = { new Order { OrderId = "e-1", Contact = new ContactRef { Id = c.Id }, OccurredAt = Timestamp.FromDateTime(DateTime.UtcNow), Currency = "KRW", Total = "5000" } },
        }, fx.As(t));

        var erased = await Client.EraseContactAsync(new EraseContactRequest { Contact = new ContactRef { ExternalId = "forget-me" } }, fx.As(t));
        Assert.Equal(1, erased.OrdersAnonymised);
        await Rpc.FailsWith(StatusCode.NotFound, () => Client.GetContactAsync(
            new GetContactRequest { Contact = new ContactRef { Id = c.Id } }, fx.As(t)).ResponseAsync);

        await using (var conn = new NpgsqlConnection(fx.ConnectionString))
        {
            var row = await conn.QuerySingleAsync<(string? Name, string? Email, string? Phone)>(
                "SELECT name, email, phone FROM contacts WHERE tenant_id = @t AND contact_id = @id", new { t, id = Guid.Parse(c.Id) });
            Assert.Equal((null, null, null), row);
            var order = await conn.QuerySingleAsync<(Guid? ContactId, decimal Total)>(
                "SELECT contact_id, total FROM orders WHERE tenant_id = @t AND order_id = 'e-1'", new { t });
            Assert.Null(order.ContactId);
            Assert.Equal(5000m, order.Total);
            // Nothing readable remains: the name, email and phone appear nowhere in the tenant's rows.
            var leaks = await conn.ExecuteScalarAsync<long>("""
                SELECT count(*) FROM contacts WHERE tenant_id = @t AND (contacts::text LIKE '%seoyeon%' OR contacts::text LIKE '%이서연%' OR contacts::text LIKE '%1020000000%')
                """, new { t });
            Assert.Equal(0, leaks);
        }

        // A later import of the same person (by external id or phone) is recognised and never messaged.
        var again = await Client.UpsertContactAsync(new UpsertContactRequest { ExternalId = "forget-me" }, fx.As(t));
        Assert.True(again.Created);
        Assert.True(again.Contact.Suppressed);
        var byPhone = await Client.UpsertContactAsync(new UpsertContactRequest { ExternalId = "new-id", Phone = "010-2000-0000" }, fx.As(t));
        Assert.True(byPhone.Contact.Suppressed);
        var stranger = await Client.UpsertContactAsync(new UpsertContactRequest { ExternalId = "someone-else" }, fx.As(t));
        Assert.False(stranger.Contact.Suppressed);

        // The imports recognise the same hashes (computed in SQL there).
        await Imports.ContactsAsync(Client, fx.As(t), "id,email\nimported-1,SeoYeon@Example.KR\nimported-2,other@example.kr\n",
            new ContactColumns { ExternalId = "id", Email = "email" });
        var imported = await Client.ListContactsAsync(new ListContactsRequest { Query = "imported-" }, fx.As(t));
        Assert.Equal([true, false], imported.Contacts.OrderBy(x => x.ExternalId).Select(x => x.Suppressed));
    }

    [Fact]
    public async Task Should_record_engagement_once_per_event_id()
    {
        var t = ContactsFixture.NewTenant();
        await Client.UpsertContactAsync(new UpsertContactRequest { ExternalId = "engaged" }, fx.As(t));
        var ev = new EngagementEvent
        {
            EventId = "evt-1", Contact = new ContactRef { ExternalId = "engaged" }, Type = EngagementType.Clicked,
            Channel = Channel.Email, CampaignId = "spring", OccurredAt = Timestamp.FromDateTime(DateTime.UtcNow),
            Properties = Struct.Parser.ParseJson("""{"url":"https://shop.example/sale"}"""),
        };
        var custom = new EngagementEvent
        {
            EventId = "evt-2", Contact = new ContactRef { ExternalId = "engaged" }, Type = EngagementType.Custom, Name = "wishlist_added",
            OccurredAt = Timestamp.FromDateTime(DateTime.UtcNow),
        };
        var first = await Client.RecordEngagementAsync(new RecordEngagementRequest { Events = { ev, custom } }, fx.As(t));
        Assert.Equal(2, first.Recorded);
        var second = await Client.RecordEngagementAsync(new RecordEngagementRequest { Events = { ev } }, fx.As(t));
        Assert.Equal(0, second.Recorded);
        Assert.Equal(1, second.Duplicates);
        var bad = await Rpc.FailsWith(StatusCode.InvalidArgument, () => Client.RecordEngagementAsync(new RecordEngagementRequest
        {
            Events = { new EngagementEvent { EventId = "evt-3", Contact = new ContactRef { ExternalId = "engaged" }, Type = EngagementType.Custom } },
        }, fx.As(t)).ResponseAsync);
        Assert.Contains("events[0].name", Rpc.ViolatedFields(bad));
    }

    [Fact]
    public async Task Should_be_ready_only_while_postgres_answers()
    {
        // A replica of its own, reaching PostgreSQL through a relay the test can cut (the shared server stays up).
        var postgres = new NpgsqlConnectionStringBuilder(fx.ConnectionString);
        await using var relay = new TcpRelay(postgres.Host!, postgres.Port);
        postgres.Host = "127.0.0.1";
        postgres.Port = relay.Port;
        await using var host = await ServiceHost.StartAsync(ContactsModule.Build, new Dictionary<string, string?>
        {
            ["ConnectionStrings:Postgres"] = postgres.ConnectionString,
            ["ConnectionStrings:RabbitMq"] = fx.RabbitMqUri,
            ["Outbox:RelayEnabled"] = "false",
        });
        using var http = new HttpClient { BaseAddress = host.HttpAddress };
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/health/live")).StatusCode);
        // Start-up waits for the bus (MassTransit WaitUntilStarted): a started service is ready at once.
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/health/ready")).StatusCode);

        await relay.CutAsync();
        Assert.Equal(HttpStatusCode.ServiceUnavailable, (await http.GetAsync("/health/ready")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/health/live")).StatusCode); // alive: not restarted for it

        relay.Open();
        await ReadyAgainAsync(http);
    }

    private static async Task ReadyAgainAsync(HttpClient http)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while ((await http.GetAsync("/health/ready")).StatusCode != HttpStatusCode.OK)
        {
            Assert.True(DateTime.UtcNow < deadline, "the service did not become ready again when PostgreSQL came back");
            await Task.Delay(100);
        }
    }
}
