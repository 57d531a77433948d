extern alias contacts;

using Crm.BuildingBlocks.Tenancy;
using Crm.Contacts.V1;
using Crm.Segmentation.Tests.Infrastructure;
using Crm.Segmentation.V1;
using Crm.TestSupport;
using Dapper;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Npgsql;
using Channel = Crm.Contacts.V1.Channel;
using ContactRef = Crm.Contacts.V1.ContactRef;
using Purpose = Crm.Contacts.V1.Purpose;
using Value = Google.Protobuf.WellKnownTypes.Value;

namespace Crm.Segmentation.Tests;

/// <summary>
/// A Segmentation deployed after Contacts already holds a shop's data: it missed every event, rebuilds its
/// projections from Contacts' exports, and keeps consuming the events of what happens meanwhile. A rig of
/// its own (a virtual host, Contacts' and Segmentation's databases), so that no other Segmentation host
/// competes for its events.
/// </summary>
[Collection(SegmentationCollection.Name)]
public sealed class BackfillTests(SegmentationFixture fx) : IAsyncLifetime
{
    private readonly string _vhost = TestServers.UniqueName("backfill-test");
    private readonly string _contactsDb = TestServers.UniqueName("backfill_contacts");
    private readonly string _segmentationDb = TestServers.UniqueName("backfill_segmentation");
    private string _contactsConnection = "";
    private string _segmentationConnection = "";
    private string _rabbitMq = "";
    private ServiceHost _contacts = null!;
    private ServiceHost? _segmentation;

    public async Task InitializeAsync()
    {
        _rabbitMq = await TestServers.CreateVirtualHostAsync(_vhost);
        _contactsConnection = await TestServers.CreateDatabaseAsync(_contactsDb);
        _segmentationConnection = await TestServers.CreateDatabaseAsync(_segmentationDb);
        _contacts = await ServiceHost.StartAsync(contacts::Crm.Contacts.ContactsModule.Build, new Dictionary<string, string?>
        {
            ["ConnectionStrings:Postgres"] = _contactsConnection,
            ["ConnectionStrings:RabbitMq"] = _rabbitMq,
            ["Outbox:PollInterval"] = "00:00:00.050",
        });
    }

    public async Task DisposeAsync()
    {
        if (_segmentation is not null) await _segmentation.DisposeAsync();
        await _contacts.DisposeAsync();
        await TestServers.DropDatabaseAsync(_contactsDb);
        await TestServers.DropDatabaseAsync(_segmentationDb);
        await TestServers.DeleteVirtualHostAsync(_vhost);
    }

    private ContactsService.ContactsServiceClient Contacts => new(_contacts.Channel);

    private Task<ServiceHost> StartSegmentationAsync() => fx.StartHostAsync(new Dictionary<string, string?>
    {
        ["ConnectionStrings:Postgres"] = _segmentationConnection,
        ["ConnectionStrings:RabbitMq"] = _rabbitMq,
        ["ConnectionStrings:Contacts"] = _contacts.GrpcAddress.ToString(),
        ["Segmentation:Backfill:PageSize"] = "7",
    });

    private static readonly DateTime Start = new(2025, 6, 1, 9, 0, 0, DateTimeKind.Utc);

    private static Order NewOrder(string orderId, string customer, int day, params (string Sku, string? Category, int Quantity, string Price)[] lines)
    {
        var order = new Order { OrderId = orderId, Contact = new ContactRef { ExternalId = customer }, OccurredAt = Timestamp.FromDateTime(Start.AddDays(day)), Currency = "KRW" };
        order.Lines.AddRange(lines.Select(l => new LineItem { Sku = l.Sku, Category = l.Category ?? "", Quantity = l.Quantity.ToString(System.Globalization.CultureInfo.InvariantCulture), UnitPrice = l.Price }));
        return order;
    }

    private static EngagementEvent NewEvent(string eventId, string customer, EngagementType type, int day) => new()
    {
        EventId = eventId, Contact = new ContactRef { ExternalId = customer }, Type = type, Channel = Channel.Email, CampaignId = "spring",
        OccurredAt = Timestamp.FromDateTime(Start.AddDays(day)), Properties = new Struct { Fields = { ["n"] = Value.ForNumber(day) } },
    };

    /// <summary>A shop's history: 24 customers with profiles, consents, push tokens, 3 orders and 2 engagement events each; one erased.</summary>
    private async Task RecordHistoryAsync(CallOptions auth)
    {
        for (var i = 0; i < 24; i++)
        {
            var c = $"c-{i:D2}";
            var upsert = new UpsertContactRequest
            {
                ExternalId = c, Locale = "ko-KR", TimeZone = "Asia/Seoul", AddTags = { i % 4 == 0 ? "vip" : "regular" },
                Attributes = { ["points"] = new AttributeValue { NumberValue = i * 10 }, ["joined"] = new AttributeValue { DateValue = Timestamp.FromDateTime(Start.AddDays(-i)) } },
            };
            if (i % 2 == 0) upsert.Email = $"{c}@example.kr";
            if (i % 3 == 0) upsert.Phone = $"010-5555-{i:D4}";
            await Contacts.UpsertContactAsync(upsert, auth);
            await Contacts.SetConsentAsync(new SetConsentRequest
            {
                Contact = new ContactRef { ExternalId = c }, Channel = Channel.Email, Purpose = Purpose.Marketing,
                Status = i % 5 == 0 ? ConsentStatus.OptedOut : ConsentStatus.OptedIn, Source = ConsentSource.Form,
            }, auth);
            if (i % 3 == 1)
                await Contacts.RegisterPushTokenAsync(new RegisterPushTokenRequest { Contact = new ContactRef { ExternalId = c }, DeviceId = "phone", Platform = "ios", Token = "tok-" + c }, auth);
            await Contacts.RecordTransactionsAsync(new RecordTransactionsRequest
            {
                Orders =
                {
                    NewOrder($"o-{c}-0", c, i, ("tea", "drinks", 2, "4500"), ("cup", null, 1, "12000")),
                    NewOrder($"o-{c}-1", c, i + 30, ("tea", "drinks", 1, "4500")),
                    NewOrder($"o-{c}-2", c, i + 60, ("kettle", "kitchen", 1, "39000.50")),
                },
            }, auth);
            await Contacts.RecordEngagementAsync(new RecordEngagementRequest
            {
                Events = { NewEvent($"e-{c}-0", c, EngagementType.Delivered, i), NewEvent($"e-{c}-1", c, EngagementType.Opened, i + 1) },
            }, auth);
        }
        await Contacts.EraseContactAsync(new EraseContactRequest { Contact = new ContactRef { ExternalId = "c-23" } }, auth);
    }

    private static async Task<T> InTenantAsync<T>(string connection, string tenant, Func<NpgsqlConnection, Task<T>> query)
    {
        await using var conn = new NpgsqlConnection(connection);
        await conn.OpenAsync();
        await using var tx = await conn.BeginTransactionAsync();
        await conn.ExecuteAsync("SELECT set_config('crm.tenant', @tenant, true)", new { tenant }, tx);
        return await query(conn);
    }

    /// <summary>What a projection must equal, read from Contacts' tables; and the same read from the projection.</summary>
    private async Task<(string Contacts, string Projection)> SnapshotsAsync(string tenant)
    {
        var contacts = await InTenantAsync(_contactsConnection, tenant, conn => conn.QuerySingleAsync<string>("""
            SELECT concat_ws(E'\n',
              (SELECT string_agg(concat_ws(':', c.contact_id, c.locale, c.email IS NOT NULL, c.phone IS NOT NULL, c.tags::text, c.attributes::text,
                        (SELECT count(*) FROM push_tokens p WHERE p.tenant_id = c.tenant_id AND p.contact_id = c.contact_id), c.created_at), ' ' ORDER BY c.contact_id)
               FROM contacts c WHERE c.erased_at IS NULL),
              (SELECT string_agg(concat_ws(':', contact_id, channel, purpose, status, changed_at), ' ' ORDER BY contact_id, channel, purpose) FROM consents),
              (SELECT string_agg(concat_ws(':', order_id, contact_id, status, total,
                        (SELECT string_agg(concat_ws('/', l->>0, l->>2, (l->>3)::numeric * (l->>4)::numeric), ',') FROM json_array_elements(o.lines) l)), ' ' ORDER BY order_id)
               FROM orders o WHERE contact_id IS NOT NULL),
              (SELECT string_agg(concat_ws(':', event_id, contact_id, type, properties::text), ' ' ORDER BY event_id) FROM engagement_events WHERE contact_id IS NOT NULL))
            """));
        var projection = await InTenantAsync(_segmentationConnection, tenant, conn => conn.QuerySingleAsync<string>("""
            SELECT concat_ws(E'\n',
              (SELECT string_agg(concat_ws(':', contact_id, locale, has_email, has_phone, tags::text, attributes::text, push_tokens, created_at), ' ' ORDER BY contact_id)
               FROM contacts),
              (SELECT string_agg(concat_ws(':', contact_id, channel, purpose, status, changed_at), ' ' ORDER BY contact_id, channel, purpose) FROM consents),
              (SELECT string_agg(concat_ws(':', order_id, contact_id, status, total,
                        (SELECT string_agg(concat_ws('/', s, c, a), ',' ORDER BY i) FROM unnest(skus, categories, amounts) WITH ORDINALITY AS l(s, c, a, i))), ' ' ORDER BY order_id)
               FROM orders),
              (SELECT string_agg(concat_ws(':', event_id, contact_id, type, properties::text), ' ' ORDER BY event_id) FROM engagement))
            """));
        return (contacts, projection);
    }

    [Fact]
    public async Task Should_rebuild_a_late_services_projections_while_events_keep_arriving_losing_and_doubling_nothing()
    {
        var tenant = SegmentationFixture.NewTenant();
        var auth = _contacts.As(tenant);
        await RecordHistoryAsync(auth);
        // Every event of the history is published before Segmentation exists: nobody receives them.
        await InTenantAsync(_contactsConnection, tenant, async conn =>
        {
            var deadline = DateTime.UtcNow.AddSeconds(30);
            while (await conn.ExecuteScalarAsync<long>("SELECT count(*) FROM outbox_messages WHERE published_at IS NULL") > 0)
            {
                if (DateTime.UtcNow > deadline) throw new TimeoutException("Contacts' outbox was not published");
                await Task.Delay(50);
            }
            return 0;
        });

        _segmentation = await StartSegmentationAsync();
        var segmentation = new SegmentationService.SegmentationServiceClient(_segmentation.Channel);
        Assert.Equal(0L, await InTenantAsync(_segmentationConnection, tenant, c => c.ExecuteScalarAsync<long>("SELECT count(*) FROM contacts")));

        // The backfill's first write is held back (the test holds the row of the first contact it exports), so that
        // what happens next happens after the exports' snapshots and is consumed before the backfill writes it.
        var (firstId, firstExternal) = await InTenantAsync(_contactsConnection, tenant, c => c.QuerySingleAsync<(Guid, string)>(
            "SELECT contact_id, external_id FROM contacts WHERE erased_at IS NULL ORDER BY contact_id LIMIT 1"));
        Assert.Equal("c-00", firstExternal);
        await using var hold = new NpgsqlConnection(_segmentationConnection);
        await hold.OpenAsync();
        await using var holding = await hold.BeginTransactionAsync();
        await hold.ExecuteAsync("SELECT set_config('crm.tenant', @tenant, true); INSERT INTO contacts (tenant_id, contact_id, created_at) VALUES (@tenant, @firstId, now())",
            new { tenant, firstId }, holding);

        var rebuild = await segmentation.RebuildProjectionsAsync(new RebuildProjectionsRequest(), _segmentation.As(tenant, Scope.SegmentsWrite, Scope.ContactsRead));
        Assert.Equal(RebuildStatus.Running, rebuild.Status);

        // Meanwhile (to contacts past the backfill's first page, which waits): new orders and engagement, a refund of
        // an old order, a changed profile, a new customer, an erasure.
        await Contacts.UpsertContactAsync(new UpsertContactRequest { ExternalId = "new-customer", Email = "new@example.kr" }, auth);
        await Contacts.RecordTransactionsAsync(new RecordTransactionsRequest
        {
            Orders =
            {
                NewOrder("o-c-15-3", "c-15", 90, ("tea", "drinks", 3, "4500")),
                NewOrder("o-new-0", "new-customer", 91, ("cup", null, 2, "12000")),
            },
        }, auth);
        await Contacts.RecordTransactionsAsync(new RecordTransactionsRequest
        {
            Orders = { new Order { OrderId = "o-c-17-0", Contact = new ContactRef { ExternalId = "c-17" }, OccurredAt = Timestamp.FromDateTime(Start.AddDays(17)), Currency = "KRW", Total = "1", Status = OrderStatus.Refunded } },
        }, auth);
        await Contacts.RecordEngagementAsync(new RecordEngagementRequest { Events = { NewEvent("e-c-15-2", "c-15", EngagementType.Clicked, 92), NewEvent("e-c-16-2", "c-16", EngagementType.Converted, 93) } }, auth);
        await Contacts.UpsertContactAsync(new UpsertContactRequest { ExternalId = "c-19", Locale = "en-GB" }, auth);
        var erased = (await Contacts.EraseContactAsync(new EraseContactRequest { Contact = new ContactRef { ExternalId = "c-21" } }, auth)).ContactId;
        // All of it consumed while the backfill waits.
        await InTenantAsync(_segmentationConnection, tenant, async conn =>
        {
            var deadline = DateTime.UtcNow.AddSeconds(30);
            while (await conn.ExecuteScalarAsync<long>("""
                SELECT (SELECT count(*) FROM orders WHERE order_id IN ('o-c-15-3', 'o-new-0') OR (order_id = 'o-c-17-0' AND status = 'refunded'))
                     + (SELECT count(*) FROM engagement WHERE event_id IN ('e-c-15-2', 'e-c-16-2'))
                     + (SELECT count(*) FROM contacts WHERE locale = 'en-GB')
                     + (SELECT count(*) FROM erased_contacts)
                """) < 7)
            {
                if (DateTime.UtcNow > deadline) throw new TimeoutException("The events recorded during the rebuild were not consumed");
                await Task.Delay(50);
            }
            return 0;
        });
        Assert.Equal(0L, await hold.ExecuteScalarAsync<long>("SELECT count(*) FROM rebuilds WHERE contacts > 0", transaction: holding));
        await holding.RollbackAsync();

        // More events while the backfill runs.
        await Contacts.RecordTransactionsAsync(new RecordTransactionsRequest { Orders = { NewOrder("o-c-02-3", "c-02", 95, ("kettle", "kitchen", 2, "39000.50")) } }, auth);
        await Contacts.RecordEngagementAsync(new RecordEngagementRequest { Events = { NewEvent("e-c-02-2", "c-02", EngagementType.Opened, 95) } }, auth);

        var readAuth = _segmentation.As(tenant, Scope.SegmentsRead);
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (rebuild.Status == RebuildStatus.Running)
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"The rebuild is still running: {rebuild}");
            await Task.Delay(100);
            rebuild = await segmentation.GetRebuildAsync(new GetRebuildRequest { RebuildId = rebuild.RebuildId }, readAuth);
        }
        Assert.Equal(RebuildStatus.Succeeded, rebuild.Status);
        Assert.NotNull(rebuild.FinishedAt);
        // What the snapshots held: 23 contacts (one erased before), their consents, 3 orders and 2 events each.
        Assert.Equal((23L, 23L, 69L, 46L), (rebuild.Contacts, rebuild.Consents, rebuild.Orders, rebuild.EngagementEvents));

        // The projections equal Contacts' data, once the last events are in.
        var (expected, actual) = await SnapshotsAsync(tenant);
        for (var until = DateTime.UtcNow.AddSeconds(30); expected != actual && DateTime.UtcNow < until; (expected, actual) = await SnapshotsAsync(tenant))
            await Task.Delay(100);
        Assert.Equal(expected, actual);

        // Spelled out: exact order counts and totals per contact, the refund kept, the erasures kept.
        var perContact = (await InTenantAsync(_segmentationConnection, tenant, c => c.QueryAsync<(Guid, long, decimal)>(
            "SELECT contact_id, count(*), coalesce(sum(total) FILTER (WHERE status = 'completed'), 0) FROM orders GROUP BY contact_id ORDER BY contact_id"))).ToList();
        var inContacts = (await InTenantAsync(_contactsConnection, tenant, c => c.QueryAsync<(Guid, long, decimal)>(
            "SELECT contact_id, count(*), coalesce(sum(total) FILTER (WHERE status = 'completed'), 0) FROM orders WHERE contact_id IS NOT NULL GROUP BY contact_id ORDER BY contact_id"))).ToList();
        Assert.Equal(inContacts, perContact);
        Assert.Equal(23, perContact.Count); // 22 of the history (two erased), and the new customer
        Assert.Equal(69, perContact.Sum(p => p.Item2));
        Assert.Equal("refunded", await InTenantAsync(_segmentationConnection, tenant, c => c.ExecuteScalarAsync<string>("SELECT status FROM orders WHERE order_id = 'o-c-17-0'")));
        Assert.Equal(0L, await InTenantAsync(_segmentationConnection, tenant, c => c.ExecuteScalarAsync<long>(
            "SELECT (SELECT count(*) FROM contacts WHERE contact_id = @erased) + (SELECT count(*) FROM orders WHERE contact_id = @erased) + (SELECT count(*) FROM engagement WHERE contact_id = @erased)",
            new { erased = Guid.Parse(erased) })));
        Assert.Equal(2L, await InTenantAsync(_segmentationConnection, tenant, c => c.ExecuteScalarAsync<long>("SELECT count(*) FROM engagement WHERE contact_id = (SELECT contact_id FROM orders WHERE order_id = 'o-c-02-3') AND type = 'opened'")));
        // The touched contacts were refreshed (memberships follow the backfill).
        await InTenantAsync(_segmentationConnection, tenant, async conn =>
        {
            var until = DateTime.UtcNow.AddSeconds(30);
            while (await conn.ExecuteScalarAsync<long>("SELECT count(*) FROM dirty_contacts") > 0)
            {
                if (DateTime.UtcNow > until) throw new TimeoutException("The contacts the rebuild touched were not refreshed");
                await Task.Delay(50);
            }
            return 0;
        });
    }

    [Fact]
    public async Task Should_refuse_a_rebuild_without_contacts_read_and_keep_rebuilds_to_their_tenant()
    {
        var tenant = SegmentationFixture.NewTenant();
        await Contacts.UpsertContactAsync(new UpsertContactRequest { ExternalId = "solo" }, _contacts.As(tenant));
        _segmentation = await StartSegmentationAsync();
        var segmentation = new SegmentationService.SegmentationServiceClient(_segmentation.Channel);

        var denied = await Assert.ThrowsAsync<RpcException>(() =>
            segmentation.RebuildProjectionsAsync(new RebuildProjectionsRequest(), _segmentation.As(tenant, Scope.SegmentsWrite)).ResponseAsync);
        Assert.Equal(StatusCode.PermissionDenied, denied.StatusCode);
        Assert.Contains("contacts.read", denied.Status.Detail);
        var noWrite = await Assert.ThrowsAsync<RpcException>(() =>
            segmentation.RebuildProjectionsAsync(new RebuildProjectionsRequest(), _segmentation.As(tenant, Scope.SegmentsRead, Scope.ContactsRead)).ResponseAsync);
        Assert.Equal(StatusCode.PermissionDenied, noWrite.StatusCode);

        var rebuild = await segmentation.RebuildProjectionsAsync(new RebuildProjectionsRequest(), _segmentation.As(tenant, Scope.SegmentsWrite, Scope.ContactsRead));
        var other = await Assert.ThrowsAsync<RpcException>(() =>
            segmentation.GetRebuildAsync(new GetRebuildRequest { RebuildId = rebuild.RebuildId }, _segmentation.As(SegmentationFixture.NewTenant(), Scope.SegmentsRead)).ResponseAsync);
        Assert.Equal(StatusCode.NotFound, other.StatusCode);
        var bad = await Assert.ThrowsAsync<RpcException>(() =>
            segmentation.GetRebuildAsync(new GetRebuildRequest { RebuildId = "nope" }, _segmentation.As(tenant, Scope.SegmentsRead)).ResponseAsync);
        Assert.Equal(StatusCode.InvalidArgument, bad.StatusCode);
        Assert.Contains("rebuild_id", bad.Status.Detail);

        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (rebuild.Status == RebuildStatus.Running && DateTime.UtcNow < deadline)
        {
            await Task.Delay(100);
            rebuild = await segmentation.GetRebuildAsync(new GetRebuildRequest { RebuildId = rebuild.RebuildId }, _segmentation.As(tenant, Scope.SegmentsRead));
        }
        Assert.Equal((RebuildStatus.Succeeded, 1L), (rebuild.Status, rebuild.Contacts));
    }
}
