using Crm.BuildingBlocks.Outbox;
using Crm.Contacts.Tests.Infrastructure;
using Crm.Contacts.V1;
using Crm.Contracts.Contacts;
using Dapper;
using Google.Protobuf.WellKnownTypes;
using Npgsql;

namespace Crm.Contacts.Tests;

/// <summary>The fields projections need, filled in the events Contacts publishes (API and import paths).</summary>
[Collection(ContactsCollection.Name)]
public sealed class EventFieldsTests(ContactsFixture fx)
{
    private async Task<List<T>> OutboxAsync<T>(string tenant)
    {
        await using var conn = new NpgsqlConnection(fx.ConnectionString);
        return (await conn.QueryAsync<string>(
                "SELECT payload FROM outbox_messages WHERE message_type LIKE @type AND payload::json->>'tenantId' = @tenant ORDER BY id",
                new { type = typeof(T).FullName + "%", tenant }))
            .Select(p => System.Text.Json.JsonSerializer.Deserialize<T>(p, Outbox.Json)!).ToList();
    }

    [Fact]
    public async Task Should_announce_a_contacts_creation_time_and_push_tokens_with_the_version_an_export_shows()
    {
        var t = ContactsFixture.NewTenant();
        var auth = fx.As(t);
        var created = (await fx.Client.UpsertContactAsync(new UpsertContactRequest { ExternalId = "p-1", Email = "p1@example.kr" }, auth)).Contact;
        await fx.Client.RegisterPushTokenAsync(new RegisterPushTokenRequest { Contact = new ContactRef { ExternalId = "p-1" }, DeviceId = "d-1", Platform = "ios", Token = "a" }, auth);
        // The same device again (a new token) changes no count: no event.
        await fx.Client.RegisterPushTokenAsync(new RegisterPushTokenRequest { Contact = new ContactRef { ExternalId = "p-1" }, DeviceId = "d-1", Platform = "ios", Token = "b" }, auth);
        await fx.Client.RegisterPushTokenAsync(new RegisterPushTokenRequest { Contact = new ContactRef { ExternalId = "p-1" }, DeviceId = "d-2", Platform = "android", Token = "c" }, auth);
        var current = await fx.Client.GetContactAsync(new GetContactRequest { Contact = new ContactRef { ExternalId = "p-1" } }, auth);

        var events = await OutboxAsync<ContactUpserted>(t);
        Assert.Equal([0, 1, 2], events.Select(e => e.PushTokens));
        Assert.All(events, e => Assert.Equal(created.CreatedAt.ToDateTimeOffset(), e.CreatedAt));
        Assert.Equal(created.UpdatedAt.ToDateTimeOffset(), events[0].OccurredAt);
        // The last event's version is the row's updated_at: an export of the contact carries the same.
        Assert.Equal(current.UpdatedAt.ToDateTimeOffset(), events[^1].OccurredAt);
        Assert.True(events[0].OccurredAt < events[1].OccurredAt && events[1].OccurredAt < events[2].OccurredAt);
    }

    [Fact]
    public async Task Should_announce_order_lines_with_amounts_and_engagement_properties()
    {
        var t = ContactsFixture.NewTenant();
        var auth = fx.As(t);
        var at = Timestamp.FromDateTime(new DateTime(2026, 3, 1, 9, 0, 0, DateTimeKind.Utc));
        await fx.Client.RecordTransactionsAsync(new RecordTransactionsRequest
        {
            Orders =
            {
                new Order
                {
                    OrderId = "o-1", Contact = new ContactRef { ExternalId = "buyer" }, OccurredAt = at, Currency = "KRW",
                    Lines =
                    {
                        new LineItem { Sku = "tea", Category = "drinks", Quantity = "2", UnitPrice = "4500" },
                        new LineItem { Sku = "cup", Quantity = "1", UnitPrice = "12000.50" },
                    },
                },
            },
        }, auth);
        // A status change announces the order as stored, lines included, whatever the request carried.
        await fx.Client.RecordTransactionsAsync(new RecordTransactionsRequest
        {
            Orders = { new Order { OrderId = "o-1", Contact = new ContactRef { ExternalId = "buyer" }, OccurredAt = at, Currency = "KRW", Total = "1", Status = OrderStatus.Refunded } },
        }, auth);
        await fx.Client.RecordEngagementAsync(new RecordEngagementRequest
        {
            Events =
            {
                new EngagementEvent
                {
                    EventId = "e-1", Contact = new ContactRef { ExternalId = "buyer" }, Type = EngagementType.Custom, Name = "viewed", OccurredAt = at,
                    Properties = new Struct { Fields = { ["page"] = Value.ForString("/tea"), ["seconds"] = Value.ForNumber(12) } },
                },
            },
        }, auth);

        var orders = (await OutboxAsync<TransactionsRecorded>(t)).SelectMany(e => e.Orders).ToList();
        Assert.Equal(["completed", "refunded"], orders.Select(o => o.Status));
        Assert.All(orders, o =>
        {
            Assert.Equal(21000.50m, o.Total);
            Assert.Equal([("tea", "drinks", 2m, 9000m), ("cup", (string?)null, 1m, 12000.50m)], o.Lines!.Select(l => (l.Sku, l.Category, l.Quantity, l.Amount)));
            Assert.Equal(["tea", "cup"], o.Skus);
            Assert.Equal(["drinks"], o.Categories);
        });
        var engagement = (await OutboxAsync<EngagementRecorded>(t)).SelectMany(e => e.Events).Single();
        var properties = System.Text.Json.Nodes.JsonNode.Parse(engagement.PropertiesJson!)!;
        Assert.Equal("/tea", (string?)properties["page"]);
        Assert.Equal(12, (double)properties["seconds"]!);
    }

    [Fact]
    public async Task Should_announce_the_lines_of_imported_orders_including_items_apart_in_the_file()
    {
        var t = ContactsFixture.NewTenant();
        const string csv = "order,customer,when,sku,category,qty,price\n"
            + "R,c1,2026-01-05T10:00:00Z,x,toys,1,2.5\n"
            + "S,c2,2026-01-05T10:00:00Z,y,,3,1\n"
            + "R,c1,2026-01-05T10:00:00Z,x,toys,2,2.5\n";
        var mapping = new TransactionColumns
        {
            OrderId = "order", CustomerId = "customer", OccurredAt = "when", Sku = "sku", Category = "category", Quantity = "qty", UnitPrice = "price", FixedCurrency = "KRW",
        };
        Assert.Equal(2, (await Imports.TransactionsAsync(fx.Client, fx.As(t), csv, mapping)).OrdersCreated);

        var orders = (await OutboxAsync<TransactionsRecorded>(t)).SelectMany(e => e.Orders).ToList();
        var s = orders.Single(o => o.OrderId == "S");
        Assert.Equal([("y", (string?)null, 3m, 3m)], s.Lines!.Select(l => (l.Sku, l.Category, l.Quantity, l.Amount)));
        // R's items were apart: gathered into one order of two lines, the same sku twice.
        var r = orders.Where(o => o.OrderId == "R").ToList();
        Assert.Equal([("x", (string?)"toys", 1m, 2.5m), ("x", "toys", 2m, 5.0m)], r[^1].Lines!.Select(l => (l.Sku, l.Category, l.Quantity, l.Amount)));
        Assert.Equal(7.5m, r[^1].Total);
        Assert.Equal(r[^1].Total, r[^1].Lines!.Sum(l => l.Amount));
    }
}
