using Crm.BuildingBlocks.Tenancy;
using Crm.Contacts.Tests.Infrastructure;
using Crm.Contacts.V1;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;

namespace Crm.Contacts.Tests;

/// <summary>The backfill exports: keyset pages streamed from one snapshot, erased contacts left out, one tenant only.</summary>
[Collection(ContactsCollection.Name)]
public sealed class ExportTests(ContactsFixture fx)
{
    private static readonly Timestamp At = Timestamp.FromDateTime(new DateTime(2026, 2, 1, 12, 0, 0, DateTimeKind.Utc));

    /// <summary>Contacts c-0 … c-(n-1), each with an opt-in, an order of two lines and an opened email with a property.</summary>
    private async Task FillAsync(string t, int n)
    {
        var auth = fx.As(t);
        for (var i = 0; i < n; i++)
        {
            var id = $"c-{i}";
            var upsert = new UpsertContactRequest
            {
                ExternalId = id, Name = "Name " + i, Locale = "ko-KR", AddTags = { "vip" }, Attributes = { ["plan"] = new AttributeValue { StringValue = "gold" } },
            };
            if (i % 2 == 0) upsert.Email = $"{id}@example.kr";
            await fx.Client.UpsertContactAsync(upsert, auth);
            await fx.Client.SetConsentAsync(new SetConsentRequest
            {
                Contact = new ContactRef { ExternalId = id }, Channel = Channel.Email, Purpose = Purpose.Marketing, Status = ConsentStatus.OptedIn, Source = ConsentSource.Form,
            }, auth);
            await fx.Client.RecordTransactionsAsync(new RecordTransactionsRequest
            {
                Orders =
                {
                    new Order
                    {
                        OrderId = $"o-{i}", Contact = new ContactRef { ExternalId = id }, OccurredAt = At, Currency = "KRW",
                        Lines = { new LineItem { Sku = "tea", Name = "Green tea", Category = "drinks", Quantity = "2", UnitPrice = "4500" }, new LineItem { Sku = "cup", Quantity = "1", UnitPrice = "100" } },
                    },
                },
            }, auth);
            await fx.Client.RecordEngagementAsync(new RecordEngagementRequest
            {
                Events =
                {
                    new EngagementEvent
                    {
                        EventId = $"e-{i}", Contact = new ContactRef { ExternalId = id }, Type = EngagementType.Opened, Channel = Channel.Email, OccurredAt = At,
                        Properties = new Struct { Fields = { ["device"] = Value.ForString("ios") } },
                    },
                },
            }, auth);
        }
        await fx.Client.RecordTransactionsAsync(new RecordTransactionsRequest
        {
            Orders = { new Order { OrderId = "guest", OccurredAt = At, Currency = "KRW", Total = "1" } },
        }, auth);
    }

    private static async Task<List<T>> ReadAllAsync<T>(AsyncServerStreamingCall<T> call)
    {
        using (call)
        {
            var pages = new List<T>();
            await foreach (var page in call.ResponseStream.ReadAllAsync()) pages.Add(page);
            return pages;
        }
    }

    [Fact]
    public async Task Should_stream_keyset_pages_of_what_a_projection_needs_without_erased_contacts()
    {
        var t = ContactsFixture.NewTenant();
        var auth = fx.As(t, Scope.ContactsRead, Scope.ContactsWrite);
        await FillAsync(t, 7);
        await fx.Client.RegisterPushTokenAsync(new RegisterPushTokenRequest { Contact = new ContactRef { ExternalId = "c-1" }, DeviceId = "d", Platform = "ios", Token = "x" }, auth);
        var erased = (await fx.Client.EraseContactAsync(new EraseContactRequest { Contact = new ContactRef { ExternalId = "c-3" } }, auth)).ContactId;
        var read = fx.As(t, Scope.ContactsRead);

        var contactPages = await ReadAllAsync(fx.Client.ExportContacts(new ExportRequest { PageSize = 4 }, read));
        Assert.Equal([4, 2], contactPages.Select(p => p.Contacts.Count));
        var contacts = contactPages.SelectMany(p => p.Contacts).ToList();
        Assert.Equal(contacts.Select(c => Guid.Parse(c.ContactId)).Order(), contacts.Select(c => Guid.Parse(c.ContactId)));
        Assert.DoesNotContain(erased, contacts.Select(c => c.ContactId));
        Assert.Equal(["c-0", "c-1", "c-2", "c-4", "c-5", "c-6"], contacts.Select(c => c.ExternalId).Order());
        var c1 = contacts.Single(c => c.ExternalId == "c-1");
        var full = await fx.Client.GetContactAsync(new GetContactRequest { Contact = new ContactRef { ExternalId = "c-1" } }, read);
        Assert.Equal((false, false, 1, "ko-KR", "vip"), (c1.HasEmail, c1.HasPhone, c1.PushTokens, c1.Locale, string.Join(",", c1.Tags)));
        Assert.True(contacts.Single(c => c.ExternalId == "c-0").HasEmail);
        Assert.Equal("gold", (string?)System.Text.Json.Nodes.JsonNode.Parse(c1.AttributesJson)!["plan"]);
        Assert.Equal((full.CreatedAt, full.UpdatedAt), (c1.CreatedAt, c1.UpdatedAt));
        // Every page says which snapshot it is from, and where to resume after it.
        Assert.Single(contactPages.Select(p => p.SnapshotAt).Distinct());
        Assert.Equal(contacts[3].ContactId, System.Text.Encoding.UTF8.GetString(Convert.FromBase64String(Pad(contactPages[0].NextPageToken))));

        var consents = (await ReadAllAsync(fx.Client.ExportConsents(new ExportRequest { PageSize = 5 }, read))).SelectMany(p => p.Consents).ToList();
        Assert.Equal(6, consents.Count);
        Assert.All(consents, c => Assert.Equal((Channel.Email, Purpose.Marketing, ConsentStatus.OptedIn), (c.Consent.Channel, c.Consent.Purpose, c.Consent.Status)));

        var orderPages = await ReadAllAsync(fx.Client.ExportOrders(new ExportRequest { PageSize = 5 }, read));
        var orders = orderPages.SelectMany(p => p.Orders).ToList();
        // The guest order, and the erased contact's (anonymised) order, are left out.
        Assert.Equal(["o-0", "o-1", "o-2", "o-4", "o-5", "o-6"], orders.Select(o => o.OrderId));
        Assert.Equal([("tea", "", "drinks", "2", "4500"), ("cup", "", "", "1", "100")],
            orders[0].Lines.Select(l => (l.Sku, l.Name, l.Category, l.Quantity, l.UnitPrice)));
        Assert.Equal(9100m, decimal.Parse(orders[0].Total, System.Globalization.CultureInfo.InvariantCulture));

        var events = (await ReadAllAsync(fx.Client.ExportEngagement(new ExportRequest(), read))).SelectMany(p => p.Events).ToList();
        Assert.Equal(["e-0", "e-1", "e-2", "e-4", "e-5", "e-6"], events.Select(e => e.EventId));
        Assert.All(events, e => Assert.Equal("ios", e.Properties.Fields["device"].StringValue));
        Assert.Equal(contacts.Single(c => c.ExternalId == "c-0").ContactId, events[0].Contact.Id);

        // Resuming after a page continues with the next key.
        var rest = await ReadAllAsync(fx.Client.ExportOrders(new ExportRequest { PageSize = 5, PageToken = orderPages[0].NextPageToken }, read));
        Assert.Equal(["o-6"], rest.SelectMany(p => p.Orders).Select(o => o.OrderId));
    }

    [Fact]
    public async Task Should_read_one_snapshot_per_stream_whatever_changes_while_it_runs()
    {
        var t = ContactsFixture.NewTenant();
        var auth = fx.As(t);
        // Enough contacts that a stream of one-row pages is still running when the changes below commit.
        var csv = new System.Text.StringBuilder("id,locale\n");
        for (var i = 0; i < 1500; i++) csv.Append(System.Globalization.CultureInfo.InvariantCulture, $"i-{i},ko-KR\n");
        Assert.Equal(1500, (await Imports.ContactsAsync(fx.Client, auth, csv.ToString(), new ContactColumns { ExternalId = "id", Locale = "locale" })).ContactsCreated);
        var before = (await ReadAllAsync(fx.Client.ExportContacts(new ExportRequest { PageSize = 5000 }, auth))).SelectMany(p => p.Contacts).ToList();
        var (last, secondLast) = (before[^1], before[^2]);

        using var call = fx.Client.ExportContacts(new ExportRequest { PageSize = 1 }, auth);
        Assert.True(await call.ResponseStream.MoveNext(CancellationToken.None));
        var seen = call.ResponseStream.Current.Contacts.ToList();
        // After the snapshot, at the far end of the keys: a changed contact, an erased one, and a new one.
        await fx.Client.UpsertContactAsync(new UpsertContactRequest { ExternalId = last.ExternalId, Locale = "en-GB" }, auth);
        await fx.Client.EraseContactAsync(new EraseContactRequest { Contact = new ContactRef { Id = secondLast.ContactId } }, auth);
        await fx.Client.UpsertContactAsync(new UpsertContactRequest { ExternalId = "late" }, auth);
        while (await call.ResponseStream.MoveNext(CancellationToken.None)) seen.AddRange(call.ResponseStream.Current.Contacts);

        Assert.Equal(before.Select(c => c.ContactId), seen.Select(c => c.ContactId));
        Assert.Equal(("ko-KR", last.UpdatedAt), (seen[^1].Locale, seen[^1].UpdatedAt));
        Assert.Equal(secondLast.ExternalId, seen[^2].ExternalId);

        var now = (await ReadAllAsync(fx.Client.ExportContacts(new ExportRequest { PageSize = 5000 }, auth))).SelectMany(p => p.Contacts).ToList();
        Assert.Equal(1500, now.Count); // one erased, one new
        Assert.Contains("late", now.Select(c => c.ExternalId));
        var changed = now.Single(c => c.ContactId == last.ContactId);
        Assert.Equal("en-GB", changed.Locale);
        Assert.True(changed.UpdatedAt.ToDateTime() > last.UpdatedAt.ToDateTime());
    }

    [Fact]
    public async Task Should_export_only_the_callers_tenant_and_need_contacts_read()
    {
        var a = ContactsFixture.NewTenant();
        var b = ContactsFixture.NewTenant();
        await FillAsync(a, 2);
        await FillAsync(b, 3);

        var ofA = await ReadAllAsync(fx.Client.ExportOrders(new ExportRequest(), fx.As(a, Scope.ContactsRead)));
        Assert.Equal(["o-0", "o-1"], ofA.SelectMany(p => p.Orders).Select(o => o.OrderId));
        var contactsOfA = (await ReadAllAsync(fx.Client.ExportContacts(new ExportRequest(), fx.As(a, Scope.ContactsRead)))).SelectMany(p => p.Contacts).ToList();
        var contactsOfB = (await ReadAllAsync(fx.Client.ExportContacts(new ExportRequest(), fx.As(b, Scope.ContactsRead)))).SelectMany(p => p.Contacts).ToList();
        Assert.Equal(2, contactsOfA.Count);
        Assert.Equal(3, contactsOfB.Count);
        Assert.Empty(contactsOfA.Select(c => c.ContactId).Intersect(contactsOfB.Select(c => c.ContactId)));

        var denied = await Assert.ThrowsAsync<RpcException>(() => ReadAllAsync(fx.Client.ExportEngagement(new ExportRequest(), fx.As(a, Scope.ContactsWrite))));
        Assert.Equal(StatusCode.PermissionDenied, denied.StatusCode);
        var bad = await Assert.ThrowsAsync<RpcException>(() => ReadAllAsync(fx.Client.ExportContacts(new ExportRequest { PageToken = "bm90LWEtdXVpZA" }, fx.As(a))));
        Assert.Equal(StatusCode.InvalidArgument, bad.StatusCode);
        Assert.Contains("page_token", bad.Status.Detail);
    }

    private static string Pad(string token)
    {
        var s = token.Replace('-', '+').Replace('_', '/');
        return s.PadRight(s.Length + (4 - s.Length % 4) % 4, '=');
    }
}
