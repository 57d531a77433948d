using Crm.BuildingBlocks.Data;
using Crm.Contracts.Contacts;
using Crm.Segmentation.Features.Projections;
using Microsoft.Extensions.DependencyInjection;
using Crm.Segmentation.Tests.Infrastructure;

namespace Crm.Segmentation.Tests;

/// <summary>
/// The order projection's edges: events from publishers without lines, lines without a category, and the
/// creation date of a contact known only from its orders.
/// </summary>
[Collection(SegmentationCollection.Name)]
public sealed class OrderProjectionTests(SegmentationFixture fx)
{
    [Fact]
    public async Task Should_keep_skus_categories_and_amounts_per_order_from_old_and_new_events()
    {
        var tenant = SegmentationFixture.NewTenant();
        var contact = Guid.NewGuid();
        var at = DateTimeOffset.UtcNow.AddDays(-2);
        // An older publisher: distinct skus and categories, no lines. In the same event, an order whose second line has no category.
        await fx.PublishAsync(new TransactionsRecorded(tenant, [
            new RecordedOrder(contact, "old-1", at, "KRW", 5000m, "completed", ["tea-1", "cup-1"], ["tea"]),
            new RecordedOrder(contact, "new-1", at, "KRW", 7000m, "refunded", ["tea-1", "misc-9"], ["tea"],
                [new RecordedLine("tea-1", "tea", 1, 3000m), new RecordedLine("misc-9", null, 2, 4000m)]),
        ]));
        await fx.WaitUntilAsync("SELECT count(*) FROM orders WHERE tenant_id = @tenant", new { tenant }, 2);
        Assert.Equal("tea-1,cup-1|tea|", await LinesAsync(tenant, "old-1")); // amounts unknown: NULL
        Assert.Equal("tea-1,misc-9|tea|3000,4000", await LinesAsync(tenant, "new-1"));

        // The same order announced again with its lines fills the amounts; announced once more without them keeps them.
        await fx.PublishAsync(new TransactionsRecorded(tenant, [
            new RecordedOrder(contact, "old-1", at, "KRW", 5000m, "completed", ["tea-1", "cup-1"], ["tea"],
                [new RecordedLine("tea-1", "tea", 1, 2000m), new RecordedLine("cup-1", "tableware", 1, 3000m)]),
        ]));
        await fx.WaitUntilAsync("SELECT count(*) FROM orders WHERE tenant_id = @tenant AND amounts IS NOT NULL AND order_id = 'old-1'", new { tenant }, 1);
        await fx.PublishAsync(new TransactionsRecorded(tenant, [
            new RecordedOrder(contact, "old-1", at, "KRW", 5000m, "cancelled", ["tea-1", "cup-1"], ["tea", "tableware"]),
        ]));
        await fx.WaitUntilAsync("SELECT count(*) FROM orders WHERE tenant_id = @tenant AND status = 'cancelled'", new { tenant }, 1);
        Assert.Equal("tea-1,cup-1|tea,tableware|2000,3000", await LinesAsync(tenant, "old-1"));
    }

    [Fact]
    public async Task Should_date_a_contact_known_only_from_orders_by_its_first_order_and_leave_profiles_alone()
    {
        var tenant = SegmentationFixture.NewTenant();
        var buyer = Guid.NewGuid();
        var member = Guid.NewGuid();
        var now = DateTimeOffset.UtcNow;
        await fx.PublishAsync(new ContactUpserted(tenant, member, "m-1", null, null, null, null, [], "{}", false, now, CreatedAt: now.AddDays(-10)));
        await fx.WaitUntilAsync("SELECT count(*) FROM contacts WHERE tenant_id = @tenant", new { tenant }, 1);
        await fx.PublishAsync(new TransactionsRecorded(tenant, [
            new RecordedOrder(buyer, "b-2", now.AddDays(-20), "KRW", 1000m, "completed", ["s"], []),
            new RecordedOrder(buyer, "b-3", now.AddDays(-5), "KRW", 1000m, "completed", ["s"], []),
            new RecordedOrder(member, "m-2", now.AddDays(-30), "KRW", 1000m, "completed", ["s"], []),
        ]));
        await fx.WaitUntilAsync("SELECT count(*) FROM orders WHERE tenant_id = @tenant", new { tenant }, 3);
        // An order older than any seen moves the buyer's first-seen date back; a newer one does not.
        await fx.PublishAsync(new TransactionsRecorded(tenant, [new RecordedOrder(buyer, "b-1", now.AddDays(-40), "KRW", 1000m, "completed", ["s"], [])]));
        await fx.PublishAsync(new TransactionsRecorded(tenant, [new RecordedOrder(buyer, "b-4", now.AddDays(-1), "KRW", 1000m, "completed", ["s"], [])]));
        await fx.WaitUntilAsync("SELECT count(*) FROM orders WHERE tenant_id = @tenant", new { tenant }, 5);

        Assert.Equal(40, await DaysAgoAsync(tenant, buyer, now));
        Assert.Equal(10, await DaysAgoAsync(tenant, member, now)); // its profile says when it was created: orders do not change that
    }

    [Fact]
    public async Task Should_apply_two_batches_in_one_transaction_each_once()
    {
        // The backfill applies page after page in one transaction: the second page must not see the first one's
        // orders again (the staging table is drained by each batch), so an order the second page changes is
        // written once, with the second page's state, and the contact is marked dirty once.
        var tenant = SegmentationFixture.NewTenant();
        var contact = Guid.NewGuid();
        var at = DateTimeOffset.UtcNow.AddDays(-3);
        var db = fx.Host.App.Services.GetRequiredService<TenantDb>();
        await using (var scope = await db.BeginAsync(tenant))
        {
            await OrderProjection.ApplyAsync(scope, tenant, [
                new RecordedOrder(contact, "p1-a", at, "KRW", 1000m, "completed", ["s-1"], ["c-1"], [new RecordedLine("s-1", "c-1", 1, 1000m)]),
                new RecordedOrder(contact, "p1-b", at, "KRW", 2000m, "completed", ["s-2"], ["c-2"], [new RecordedLine("s-2", "c-2", 1, 2000m)]),
            ], CancellationToken.None);
            await OrderProjection.ApplyAsync(scope, tenant, [
                new RecordedOrder(contact, "p1-a", at, "KRW", 1000m, "refunded", ["s-1"], ["c-1"], [new RecordedLine("s-1", "c-1", 1, 1000m)]),
                new RecordedOrder(contact, "p2-c", at, "KRW", 3000m, "completed", ["s-3"], ["c-3"]),
            ], CancellationToken.None);
            await scope.CommitAsync();
        }
        Assert.Equal("p1-a refunded s-1|c-1|1000;p1-b completed s-2|c-2|2000;p2-c completed s-3|c-3|", await fx.QueryScalarAsync<string>("""
            SELECT string_agg(order_id || ' ' || status || ' ' || array_to_string(skus, ',') || '|' || array_to_string(categories, ',') || '|'
                              || coalesce(array_to_string(amounts, ','), ''), ';' ORDER BY order_id)
            FROM orders WHERE tenant_id = @tenant
            """, new { tenant }));
    }

    private Task<string> LinesAsync(string tenant, string orderId) => fx.QueryScalarAsync<string>(
        "SELECT array_to_string(skus, ',') || '|' || array_to_string(categories, ',') || '|' || coalesce(array_to_string(amounts, ','), '') FROM orders WHERE tenant_id = @tenant AND order_id = @orderId",
        new { tenant, orderId });

    private Task<int> DaysAgoAsync(string tenant, Guid contact, DateTimeOffset now) => fx.QueryScalarAsync<int>(
        "SELECT round(extract(epoch FROM @now - created_at) / 86400)::int FROM contacts WHERE tenant_id = @tenant AND contact_id = @contact",
        new { tenant, contact, now });
}
