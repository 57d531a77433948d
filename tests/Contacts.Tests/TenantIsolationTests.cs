using Crm.Contacts.Tests.Infrastructure;
using Crm.Contacts.V1;
using Crm.TestSupport;
using Google.Protobuf.WellKnownTypes;

namespace Crm.Contacts.Tests;

/// <summary>
/// Row-level security, seen as a forgetful query sees it: no tenant filter at all, on the service's own
/// runtime role, in a transaction set for one tenant.
/// </summary>
[Collection(ContactsCollection.Name)]
public sealed class TenantIsolationTests(ContactsFixture fx)
{
    /// <summary>Gives the tenant a row in every table the API can write.</summary>
    private async Task FillAsync(string t)
    {
        var client = fx.Client;
        var auth = fx.As(t);
        await fx.Workspaces.UpdateWorkspaceAsync(new UpdateWorkspaceRequest { Name = "shop " + t }, auth);
        await client.UpsertContactAsync(new UpsertContactRequest { ExternalId = "c-1", Email = $"{t}@example.kr", Phone = "010-5555-0000" }, auth);
        await client.SetConsentAsync(new SetConsentRequest
        {
            Contact = new ContactRef { ExternalId = "c-1" }, Channel = Channel.Sms, Purpose = Purpose.Marketing,
            Status = ConsentStatus.OptedIn, Source = ConsentSource.Form, Evidence = "form",
        }, auth);
        await client.RegisterPushTokenAsync(new RegisterPushTokenRequest { Contact = new ContactRef { ExternalId = "c-1" }, DeviceId = "d-1", Platform = "ios", Token = "tok" }, auth);
        await client.RecordTransactionsAsync(new RecordTransactionsRequest
        {
            Orders = { new Order { OrderId = "o-1", Contact = new ContactRef { ExternalId = "c-1" }, OccurredAt = Timestamp.FromDateTime(DateTime.UtcNow), Currency = "KRW", Total = "1000" } },
        }, auth);
        await client.RecordEngagementAsync(new RecordEngagementRequest
        {
            Events = { new EngagementEvent { EventId = "e-1", Contact = new ContactRef { ExternalId = "c-1" }, Type = EngagementType.Opened, Channel = Channel.Email, OccurredAt = Timestamp.FromDateTime(DateTime.UtcNow) } },
        }, auth);
        await Imports.ContactsAsync(client, auth, "id,email\nc-2,bad-address\n", new ContactColumns { ExternalId = "id", Email = "email" });
        await fx.Workspaces.CreateApiKeyAsync(new CreateApiKeyRequest { Name = "k", Scopes = { "contacts.read" } }, auth);
        await client.UpsertContactAsync(new UpsertContactRequest { ExternalId = "c-3", Phone = "010-5555-0003" }, auth);
        await client.EraseContactAsync(new EraseContactRequest { Contact = new ContactRef { ExternalId = "c-3" } }, auth); // suppressions
    }

    [Fact]
    public async Task Should_show_a_query_without_a_tenant_filter_only_the_tenant_it_runs_for()
    {
        var a = ContactsFixture.NewTenant();
        var b = ContactsFixture.NewTenant();
        await FillAsync(a);
        await FillAsync(b);

        var views = await TenantIsolationProbe.ViewAsync(fx.ConnectionString, a, b);
        // Every tenant table of the service is covered, and the other tenant has rows in each (so the probe means something).
        Assert.Equal(
            ["api_keys", "consent_history", "consents", "contacts", "engagement_events", "import_errors", "imports", "orders", "push_tokens", "suppressions", "workspaces"],
            views.Select(v => v.Table).Order());
        Assert.All(views, v => Assert.True(v.Enabled && v.Forced, $"{v.Table}: row-level security enabled {v.Enabled}, forced {v.Forced}"));
        Assert.All(views, v => Assert.True(v.OwnerSeesOfOther > 0, $"{v.Table} has no rows of the other tenant"));
        Assert.All(views, v => Assert.Equal([a], v.SeenAsTenant));
        // A connection that never set a tenant sees nothing at all.
        Assert.All(views, v => Assert.Equal(0, v.SeenWithoutTenant));
    }

    [Fact]
    public async Task Should_refuse_writing_another_tenants_row_and_switching_the_protection_off()
    {
        var a = ContactsFixture.NewTenant();
        var b = ContactsFixture.NewTenant();
        var refused = await TenantIsolationProbe.TryWriteAsOtherAsync(fx.ConnectionString, a,
            "INSERT INTO contacts (tenant_id, contact_id, external_id) VALUES (@b, gen_random_uuid(), 'smuggled')", new { b });
        Assert.Equal("42501", refused); // new row violates row-level security policy
        Assert.Equal("42501", await TenantIsolationProbe.TryDisableAsync(fx.ConnectionString, "contacts")); // must be owner
    }

    /// <summary>
    /// The import's bulk role (migration 0018) skips the policies for its COPY into orders, so it must be good
    /// for nothing else: switched to by the service's role, it can neither read, change nor delete orders, nor
    /// touch another table.
    /// </summary>
    [Fact]
    public async Task Should_let_the_import_bulk_role_insert_orders_and_do_nothing_else()
    {
        var a = ContactsFixture.NewTenant();
        var b = ContactsFixture.NewTenant();
        await FillAsync(b);
        Task<string?> AsBulkRole(string sql) => TenantIsolationProbe.TryWriteAsOtherAsync(fx.ConnectionString, a,
            "SET LOCAL ROLE crm_bulk_orders; " + sql, new { b });
        Assert.Null(await AsBulkRole("INSERT INTO orders (tenant_id, order_id, occurred_at, currency, total, status) SELECT @b, 'bulk-probe', now(), 'KRW', 0, 'completed' WHERE false"));
        Assert.Equal("42501", await AsBulkRole("SELECT count(*) FROM orders WHERE tenant_id = @b"));
        Assert.Equal("42501", await AsBulkRole("UPDATE orders SET total = 0 WHERE tenant_id = @b"));
        Assert.Equal("42501", await AsBulkRole("DELETE FROM orders WHERE tenant_id = @b"));
        Assert.Equal("42501", await AsBulkRole("SELECT count(*) FROM contacts"));
        Assert.Equal("42501", await AsBulkRole("INSERT INTO contacts (tenant_id, contact_id, external_id) VALUES (@b, gen_random_uuid(), 'smuggled')"));
    }
}
