using Crm.BuildingBlocks.Data;
using Crm.BuildingBlocks.Tenancy;
using Crm.Contracts.Contacts;
using Crm.Contracts.Segmentation;
using Crm.Segmentation.Features.Tiers;
using Crm.Segmentation.Tests.Infrastructure;
using Crm.Segmentation.V1;
using Grpc.Core;
using Npgsql;

namespace Crm.Segmentation.Tests;

[Collection(SegmentationCollection.Name)]
public sealed class TierTests(SegmentationFixture fx)
{
    [Fact]
    public async Task Should_move_a_contact_up_as_orders_arrive_and_publish_each_change_once()
    {
        var tenant = SegmentationFixture.NewTenant();
        await SetTiersAsync(tenant, TierMeasure.Spend, 365, ("silver", 100), ("gold", 1000));
        var contact = Guid.NewGuid();
        var now = fx.Clock.GetUtcNow();

        await OrderAsync(tenant, contact, "o-1", now, 150m);
        var silver = Assert.Single(await fx.Published.WaitAsync<TierChanged>(e => e.TenantId == tenant && e.ContactId == contact));
        Assert.Equal((null, "silver", 150.0), (silver.From, silver.To, silver.Value));

        // Still silver (a refund and a cancellation count for nothing): no event. Proof it was handled: the stored
        // value, written in the transaction any event would have been, and the later move to gold published after it.
        await fx.PublishAsync(new TransactionsRecorded(tenant, [
            new RecordedOrder(contact, "o-2", now, "KRW", 50m, "completed", [], []),
            new RecordedOrder(contact, "o-3", now, "KRW", 5000m, "refunded", [], []),
            new RecordedOrder(contact, "o-4", now, "KRW", 5000m, "cancelled", [], []),
        ]));
        await fx.WaitUntilAsync("SELECT count(*) FROM contact_tiers WHERE tenant_id = @tenant AND value = 200", new { tenant }, 1);
        await OrderAsync(tenant, contact, "o-5", now, 900m);
        var changes = await fx.Published.WaitAsync<TierChanged>(e => e.TenantId == tenant && e.ContactId == contact && e.To == "gold");
        Assert.Equal(("silver", 1100.0), (changes[0].From, changes[0].Value));
        Assert.Equal(2, fx.Published.All<TierChanged>(e => e.TenantId == tenant).Count);
        Assert.Equal("gold", await fx.QueryScalarAsync<string>("SELECT tier FROM contact_tiers WHERE tenant_id = @tenant", new { tenant }));

        var read = await fx.Client.GetTiersAsync(new GetTiersRequest(), fx.As(tenant, Scope.SegmentsRead));
        Assert.Equal((TierMeasure.Spend, 365), (read.Measure, read.WindowDays));
        Assert.Equal(["silver:100", "gold:1000"], read.Tiers.Select(t => $"{t.Name}:{t.MinValue}"));
        // Another tenant sees none of it.
        var other = await fx.Client.GetTiersAsync(new GetTiersRequest(), fx.As(SegmentationFixture.NewTenant(), Scope.SegmentsRead));
        Assert.Empty(other.Tiers);
    }

    [Fact]
    public async Task Should_move_a_contact_down_when_orders_leave_the_trailing_window()
    {
        var tenant = SegmentationFixture.NewTenant();
        // A host that looks for orders leaving the window every 100 ms (the default is hourly).
        await using var scheduled = await fx.StartHostAsync(new Dictionary<string, string?> { ["Segmentation:TierInterval"] = "00:00:00.100" });
        await SetTiersAsync(tenant, TierMeasure.Spend, 30, ("silver", 100), ("gold", 1000));
        var contact = Guid.NewGuid();
        var now = fx.Clock.GetUtcNow();
        await fx.PublishAsync(new TransactionsRecorded(tenant, [
            new RecordedOrder(contact, "o-old", now.AddDays(-20), "KRW", 900m, "completed", [], []),
            new RecordedOrder(contact, "o-new", now, "KRW", 200m, "completed", [], []),
        ]));
        await fx.Published.WaitAsync<TierChanged>(e => e.TenantId == tenant && e.To == "gold");

        var advanced = TimeSpan.FromDays(15);
        fx.Clock.Advance(advanced);
        try
        {
            // 35 days later the first order is out of the 30-day window: 200, silver, with no event having arrived.
            var down = await fx.Published.WaitAsync<TierChanged>(e => e.TenantId == tenant && e.To == "silver");
            Assert.Equal(("gold", 200.0), (down[0].From, down[0].Value));
        }
        finally
        {
            fx.Clock.Advance(-advanced);
        }
    }

    [Fact]
    public async Task Should_place_existing_contacts_by_order_count_when_tiers_are_set()
    {
        var tenant = SegmentationFixture.NewTenant();
        var regular = Guid.NewGuid();
        var once = Guid.NewGuid();
        var now = fx.Clock.GetUtcNow();
        await OrderAsync(tenant, regular, "r-1", now.AddDays(-3), 10m);
        await OrderAsync(tenant, regular, "r-2", now.AddDays(-2), 10m);
        await OrderAsync(tenant, regular, "r-3", now.AddDays(-1), 10m);
        await OrderAsync(tenant, once, "o-1", now, 99999m);
        await fx.WaitUntilAsync("SELECT count(*) FROM orders WHERE tenant_id = @tenant", new { tenant }, 4);
        await fx.WaitRefreshedAsync(tenant);

        await SetTiersAsync(tenant, TierMeasure.OrderCount, 0, ("regular", 2), ("loyal", 5));
        var placed = Assert.Single(await fx.Published.WaitAsync<TierChanged>(e => e.TenantId == tenant));
        Assert.Equal((regular, null, "regular", 3.0), (placed.ContactId, placed.From, placed.To, placed.Value));
        await fx.WaitRefreshedAsync(tenant);
        // The one-time buyer has a value but no tier; the default window is 365 days.
        Assert.Equal(1L, await fx.QueryScalarAsync<long>(
            "SELECT count(*) FROM contact_tiers WHERE tenant_id = @tenant AND contact_id = @once AND tier IS NULL AND value = 1", new { tenant, once }));
        Assert.Equal(365, (await fx.Client.GetTiersAsync(new GetTiersRequest(), fx.As(tenant, Scope.SegmentsRead))).WindowDays);

        // What ListContactSegments shows of a contact's tier.
        await using var data = NpgsqlDataSource.Create(fx.ConnectionString);
        await using var scope = await new TenantDb(data).BeginAsync(tenant);
        var tier = await TierEngine.GetContactTierAsync(scope, regular, CancellationToken.None);
        Assert.Equal(("regular", 3.0, "3 completed orders in the last 365 days; regular starts at 2"), (tier!.Tier, tier.Value, tier.Why));
        var below = await TierEngine.GetContactTierAsync(scope, once, CancellationToken.None);
        Assert.Equal(("", "1 completed order in the last 365 days, below the lowest tier (regular from 2)"), (below!.Tier, below.Why));
        Assert.Null(await TierEngine.GetContactTierAsync(scope, Guid.NewGuid(), CancellationToken.None));
    }

    [Fact]
    public async Task Should_refuse_invalid_tiers_naming_each_field()
    {
        var tenant = SegmentationFixture.NewTenant();
        var settings = new TierSettings
        {
            WindowDays = 4000,
            Tiers =
            {
                new TierLevel { Name = "silver", MinValue = 100 },
                new TierLevel { Name = "Silver", MinValue = 200 },
                new TierLevel { Name = "gold", MinValue = 150 },
                new TierLevel { Name = "", MinValue = -1 },
            },
        };
        var status = await LeadScoringTests.FailsWith(StatusCode.InvalidArgument,
            () => fx.Client.SetTiersAsync(new SetTiersRequest { Settings = settings }, fx.As(tenant, Scope.SegmentsWrite)).ResponseAsync);
        Assert.Equal(["settings.measure", "settings.window_days", "settings.tiers[1].name", "settings.tiers[2].min_value",
            "settings.tiers[3].name", "settings.tiers[3].min_value"], LeadScoringTests.ViolatedFields(status));

        await LeadScoringTests.FailsWith(StatusCode.PermissionDenied, () => fx.Client.SetTiersAsync(
            new SetTiersRequest { Settings = new TierSettings { Measure = TierMeasure.Spend } }, fx.As(tenant, Scope.SegmentsRead)).ResponseAsync);
    }

    private Task SetTiersAsync(string tenant, TierMeasure measure, int windowDays, params (string Name, double Min)[] tiers)
    {
        var settings = new TierSettings { Measure = measure, WindowDays = windowDays };
        settings.Tiers.AddRange(tiers.Select(t => new TierLevel { Name = t.Name, MinValue = t.Min }));
        return fx.Client.SetTiersAsync(new SetTiersRequest { Settings = settings }, fx.As(tenant, Scope.SegmentsWrite)).ResponseAsync;
    }

    private Task OrderAsync(string tenant, Guid contact, string orderId, DateTimeOffset at, decimal total) =>
        fx.PublishAsync(new TransactionsRecorded(tenant, [new RecordedOrder(contact, orderId, at, "KRW", total, "completed", [], [])]));
}
