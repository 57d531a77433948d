using Crm.Contracts.Contacts;
using Crm.Segmentation.Features.Rfm;
using Crm.Segmentation.Tests.Infrastructure;
using Crm.Segmentation.V1;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Microsoft.Extensions.DependencyInjection;

namespace Crm.Segmentation.Tests;

[Collection(SegmentationCollection.Name)]
public sealed class RfmTests(SegmentationFixture fx)
{
    /// <summary>A small shop: ten customers with ties in every measure, one who only cancelled, one who bought before the window.</summary>
    private sealed class Shop
    {
        public string Tenant { get; } = SegmentationFixture.NewTenant();
        public Guid[] Customers { get; } = Enumerable.Range(0, 12).Select(_ => Guid.NewGuid()).ToArray();
        public List<RecordedOrder> Orders { get; } = [];

        public Shop(DateTimeOffset now)
        {
            // (days ago, orders, each order's total): equal days, counts and totals on purpose.
            (int Days, int Count, decimal Each)[] plan =
            [
                (1, 5, 100m), (1, 5, 100m), (3, 4, 50m), (3, 1, 200m), (10, 1, 200m),
                (30, 2, 25m), (30, 2, 25m), (90, 1, 10m), (200, 3, 70m), (300, 1, 5m),
            ];
            for (var c = 0; c < plan.Length; c++)
                for (var i = 0; i < plan[c].Count; i++)
                    Add(c, now.AddDays(-plan[c].Days - i * 0.01).AddHours(-1), plan[c].Each);
            Add(10, now.AddDays(-5), 999m, "cancelled");
            Add(11, now.AddDays(-400), 999m);
        }

        public void Add(int customer, DateTimeOffset at, decimal total, string status = "completed") =>
            Orders.Add(new RecordedOrder(Customers[customer], $"o-{Orders.Count}", at, "KRW", total, status, ["sku"], []));

        public IEnumerable<RfmByHand.Order> ByHand => Orders.Select(o =>
            new RfmByHand.Order(o.ContactId!.Value.ToString(), o.OccurredAt.UtcDateTime, o.Total, o.Status == "completed"));
    }

    private async Task<Shop> OpenShopAsync()
    {
        var shop = new Shop(fx.Clock.GetUtcNow());
        await fx.PublishAsync(new TransactionsRecorded(shop.Tenant, shop.Orders));
        await fx.WaitUntilAsync("SELECT count(*) FROM orders WHERE tenant_id = @tenant", new { tenant = shop.Tenant }, shop.Orders.Count);
        await fx.WaitScoresSettledAsync(shop.Tenant);
        return shop;
    }

    private static void AssertScoresAre(RfmByHand.Result expected, IReadOnlyList<RfmScore> stored)
    {
        Assert.Equal(expected.Scores.Keys.Order(), stored.Select(s => s.ContactId).Order());
        foreach (var s in stored)
        {
            var e = expected.Scores[s.ContactId];
            Assert.Equal((s.ContactId, e.RecencyDays, e.Frequency, (double)e.Monetary, e.R, e.F, e.M, e.Segment),
                (s.ContactId, s.RecencyDays, s.Frequency, s.Monetary, s.R, s.F, s.M, s.Segment));
        }
    }

    [Fact]
    public async Task Should_score_by_the_breakpoints_so_that_equal_values_share_a_score()
    {
        var shop = await OpenShopAsync();
        var stored = await fx.AllScoresAsync(shop.Tenant, pageSize: 3);

        var asOf = stored[0].AsOf.ToDateTime();
        AssertScoresAre(RfmByHand.Compute(shop.ByHand, asOf, 365), stored);
        var byCustomer = stored.ToDictionary(s => Guid.Parse(s.ContactId));
        // Customers 0 and 1 are alike in everything; 5 and 6 too; 2 and 3 bought on the same day; 3 and 4 spent the same.
        Assert.Equal((byCustomer[shop.Customers[0]].R, byCustomer[shop.Customers[0]].F, byCustomer[shop.Customers[0]].M),
            (byCustomer[shop.Customers[1]].R, byCustomer[shop.Customers[1]].F, byCustomer[shop.Customers[1]].M));
        Assert.Equal((byCustomer[shop.Customers[5]].R, byCustomer[shop.Customers[5]].F, byCustomer[shop.Customers[5]].M),
            (byCustomer[shop.Customers[6]].R, byCustomer[shop.Customers[6]].F, byCustomer[shop.Customers[6]].M));
        Assert.Equal(byCustomer[shop.Customers[2]].R, byCustomer[shop.Customers[3]].R);
        Assert.Equal(byCustomer[shop.Customers[3]].M, byCustomer[shop.Customers[4]].M);
        // Values: the best recency, frequency and spend score 5, the worst 1.
        Assert.Equal((5, 5, 5, "Champions"), (byCustomer[shop.Customers[0]].R, byCustomer[shop.Customers[0]].F, byCustomer[shop.Customers[0]].M, byCustomer[shop.Customers[0]].Segment));
        Assert.Equal((1, 1, 1, "Lost"), (byCustomer[shop.Customers[9]].R, byCustomer[shop.Customers[9]].F, byCustomer[shop.Customers[9]].M, byCustomer[shop.Customers[9]].Segment));
        // Only cancelled, or only before the window: not scored.
        Assert.False(byCustomer.ContainsKey(shop.Customers[10]));
        Assert.False(byCustomer.ContainsKey(shop.Customers[11]));

        // One contact, and one segment, on their own.
        var one = await fx.Client.ListRfmScoresAsync(new ListRfmScoresRequest { ContactId = shop.Customers[4].ToString() }, fx.As(shop.Tenant, "segments.read"));
        Assert.Equal(byCustomer[shop.Customers[4]], Assert.Single(one.Scores));
        var champions = await fx.AllScoresAsync(shop.Tenant, pageSize: 1, segment: "Champions");
        Assert.Equal(stored.Where(s => s.Segment == "Champions").Select(s => s.ContactId), champions.Select(s => s.ContactId));
    }

    [Fact]
    public async Task Should_recompute_the_stored_scores_when_orders_change_and_mark_only_changed_contacts()
    {
        var shop = await OpenShopAsync();
        var before = await fx.AllScoresAsync(shop.Tenant);

        // An order arrives: the refresh notices, the schedule recomputes (Segmentation:RfmInterval is short here).
        var lapsed = shop.Customers[9];
        shop.Add(9, fx.Clock.GetUtcNow().AddMinutes(-1), 5000m);
        await fx.PublishAsync(new TransactionsRecorded(shop.Tenant, [shop.Orders[^1]]));
        await fx.WaitUntilAsync("SELECT count(*) FROM rfm_scores WHERE tenant_id = @tenant AND contact_id = @lapsed AND frequency = 2",
            new { tenant = shop.Tenant, lapsed }, 1);
        await fx.WaitScoresSettledAsync(shop.Tenant);
        var after = await fx.AllScoresAsync(shop.Tenant);
        AssertScoresAre(RfmByHand.Compute(shop.ByHand, after[0].AsOf.ToDateTime(), 365), after);
        var score = after.Single(s => s.ContactId == lapsed.ToString());
        Assert.Equal((5, 5), (score.R, score.M));

        // A recompute marks dirty exactly the contacts whose R, F, M or segment changed. An order written
        // straight into the projection (no event, so no refresh notices it) moves one contact's scores.
        var engine = fx.Host.App.Services.GetRequiredService<RfmEngine>();
        Assert.Equal(0, (await engine.RecomputeAsync(shop.Tenant, onlyIfStale: false, CancellationToken.None))!.Changed);
        shop.Add(7, fx.Clock.GetUtcNow().AddMinutes(-1), 10_000m);
        await fx.QueryScalarAsync<int>("""
            INSERT INTO orders (tenant_id, order_id, contact_id, occurred_at, currency, total, status)
            VALUES (@tenant, @OrderId, @ContactId, @OccurredAt, 'KRW', @Total, 'completed')
            """, new { tenant = shop.Tenant, shop.Orders[^1].OrderId, shop.Orders[^1].ContactId, OccurredAt = shop.Orders[^1].OccurredAt.UtcDateTime, shop.Orders[^1].Total });
        var run = await engine.RecomputeAsync(shop.Tenant, onlyIfStale: false, CancellationToken.None);
        var moved = await fx.AllScoresAsync(shop.Tenant);
        AssertScoresAre(RfmByHand.Compute(shop.ByHand, run!.AsOf.UtcDateTime, 365), moved);
        var changed = moved.Count(m => after.Single(a => a.ContactId == m.ContactId) is var a && (a.R, a.F, a.M, a.Segment) != (m.R, m.F, m.M, m.Segment));
        Assert.InRange(changed, 1, moved.Count);
        Assert.Equal(changed, run.Changed);
        Assert.Equal(before.Count, moved.Count);
    }

    [Fact]
    public async Task Should_relabel_the_stored_scores_when_the_tenant_edits_its_table()
    {
        var shop = await OpenShopAsync();
        var read = fx.As(shop.Tenant, "segments.read");
        var table = await fx.Client.GetRfmTableAsync(new GetRfmTableRequest(), read);
        Assert.Equal(RfmByHand.IssueTable.Select(s => (s.Name, s.RMin, s.RMax, s.FMin, s.FMax, s.MMin, s.MMax)),
            table.Segments.Select(s => (s.Name, s.RMin, s.RMax, s.FMin, s.FMax, s.MMin, s.MMax)));

        RfmByHand.Segment[] mine = [new("Big spenders", 1, 5, 1, 5, 4, 5), new("Recent", 4, 5, 1, 5, 1, 5)];
        var edited = new RfmTable();
        edited.Segments.AddRange(mine.Select(s => new RfmSegmentRule { Name = s.Name, RMin = s.RMin, RMax = s.RMax, FMin = s.FMin, FMax = s.FMax, MMin = s.MMin, MMax = s.MMax }));
        var denied = await Assert.ThrowsAsync<RpcException>(() => fx.Client.SetRfmTableAsync(new SetRfmTableRequest { Table = edited }, read).ResponseAsync);
        Assert.Equal(StatusCode.PermissionDenied, denied.StatusCode);
        Assert.Equal(edited, await fx.Client.SetRfmTableAsync(new SetRfmTableRequest { Table = edited }, fx.As(shop.Tenant, "segments.write")));
        Assert.Equal(edited, await fx.Client.GetRfmTableAsync(new GetRfmTableRequest(), read));

        // The stored scores carry the new names as soon as the call returns; the report uses them too.
        var stored = await fx.AllScoresAsync(shop.Tenant);
        var asOf = stored[0].AsOf.ToDateTime();
        AssertScoresAre(RfmByHand.Compute(shop.ByHand, asOf, 365, mine), stored);
        Assert.Contains(stored, s => s.Segment == "Others");
        var report = await fx.Client.GetRfmReportAsync(new GetRfmReportRequest { AsOf = Timestamp.FromDateTime(asOf) }, read);
        Assert.Equal(["Big spenders", "Recent", "Others"], report.Segments.Select(s => s.Name));
        Assert.Equal(RfmByHand.Figures(RfmByHand.Compute(shop.ByHand, asOf, 365, mine), mine).Segments.Select(s => s.Contacts),
            report.Segments.Select(s => s.Contacts));

        // Back to the issue's table.
        var original = new RfmTable();
        original.Segments.AddRange(table.Segments);
        await fx.Client.SetRfmTableAsync(new SetRfmTableRequest { Table = original }, fx.As(shop.Tenant));
        AssertScoresAre(RfmByHand.Compute(shop.ByHand, asOf, 365), await fx.AllScoresAsync(shop.Tenant));
    }

    [Fact]
    public async Task Should_refuse_a_table_naming_each_bad_field()
    {
        var tenant = SegmentationFixture.NewTenant();
        var bad = new RfmTable();
        bad.Segments.Add(new RfmSegmentRule { Name = " ", RMin = 1, RMax = 5, FMin = 1, FMax = 5, MMin = 1, MMax = 5 });
        bad.Segments.Add(new RfmSegmentRule { Name = "Loyal", RMin = 1, RMax = 5, FMin = 1, FMax = 5, MMin = 1, MMax = 5 });
        bad.Segments.Add(new RfmSegmentRule { Name = "loyal", RMin = 1, RMax = 5, FMin = 1, FMax = 5, MMin = 1, MMax = 5 });
        bad.Segments.Add(new RfmSegmentRule { Name = "Zero", RMin = 0, RMax = 6, FMin = 1, FMax = 5, MMin = 1, MMax = 5 });
        bad.Segments.Add(new RfmSegmentRule { Name = "Upside down", RMin = 1, RMax = 5, FMin = 4, FMax = 2, MMin = 1, MMax = 5 });
        bad.Segments.Add(new RfmSegmentRule { Name = "others", RMin = 1, RMax = 5, FMin = 1, FMax = 5, MMin = 1, MMax = 5 });
        var e = await Assert.ThrowsAsync<RpcException>(() => fx.Client.SetRfmTableAsync(new SetRfmTableRequest { Table = bad }, fx.As(tenant)).ResponseAsync);
        Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
        Assert.Equal(["table.segments[0].name", "table.segments[2].name", "table.segments[3].r_min", "table.segments[3].r_max",
            "table.segments[4].f_min", "table.segments[5].name"], Fields(e));

        var empty = await Assert.ThrowsAsync<RpcException>(() => fx.Client.SetRfmTableAsync(new SetRfmTableRequest(), fx.As(tenant)).ResponseAsync);
        Assert.Equal(["table.segments"], Fields(empty));
        // Nothing was stored.
        Assert.Equal(RfmByHand.IssueTable.Length, (await fx.Client.GetRfmTableAsync(new GetRfmTableRequest(), fx.As(tenant))).Segments.Count);

        var window = await Assert.ThrowsAsync<RpcException>(() => fx.Client.GetRfmReportAsync(new GetRfmReportRequest { WindowDays = -1 }, fx.As(tenant)).ResponseAsync);
        Assert.Equal(["window_days"], Fields(window));
        var contact = await Assert.ThrowsAsync<RpcException>(() => fx.Client.ListRfmScoresAsync(new ListRfmScoresRequest { ContactId = "nobody" }, fx.As(tenant)).ResponseAsync);
        Assert.Equal(["contact_id"], Fields(contact));
    }

    private static string[] Fields(RpcException e) =>
        e.GetRpcStatus()?.GetDetail<Google.Rpc.BadRequest>()?.FieldViolations.Select(v => v.Field).ToArray() ?? [];

    [Fact]
    public async Task Should_compute_the_report_for_the_requested_time_and_window()
    {
        var shop = await OpenShopAsync();
        var read = fx.As(shop.Tenant, "segments.read");
        var now = fx.Clock.GetUtcNow().UtcDateTime;
        foreach (var (asOf, window) in new[] { (now, 365), (now.AddDays(-20), 365), (now, 31), (now.AddDays(-2), 100) })
        {
            var expected = RfmByHand.Figures(RfmByHand.Compute(shop.ByHand, asOf, window));
            var report = await fx.Client.GetRfmReportAsync(new GetRfmReportRequest { AsOf = Timestamp.FromDateTime(asOf), WindowDays = window }, read);
            Assert.Equal((asOf, window), (report.AsOf.ToDateTime(), report.WindowDays));
            Assert.Equal(expected.Customers, report.Customers);
            Assert.Equal((double)expected.Revenue, report.Revenue, 1e-9);
            Assert.Equal((double)expected.TopShare, report.Top20PercentRevenueShare, 1e-12);
            Assert.Equal(expected.Segments.Select(s => (s.Name, s.Contacts, (double)s.Revenue, s.MedianDays)),
                report.Segments.Select(s => (s.Name, s.Contacts, s.Revenue, s.MedianDaysSinceLastOrder)));
        }
        // Defaults: now, 365 days.
        var defaults = await fx.Client.GetRfmReportAsync(new GetRfmReportRequest(), read);
        Assert.Equal(365, defaults.WindowDays);
        Assert.InRange(defaults.AsOf.ToDateTime(), now, now.AddMinutes(5));
        Assert.Equal(10, defaults.Customers);
        // Before anyone bought: an empty report, every segment at zero.
        var empty = await fx.Client.GetRfmReportAsync(new GetRfmReportRequest { AsOf = Timestamp.FromDateTime(now.AddDays(-500)) }, read);
        Assert.Equal((0L, 0.0, 0.0), (empty.Customers, empty.Revenue, empty.Top20PercentRevenueShare));
        Assert.All(empty.Segments, s => Assert.Equal(0, s.Contacts));
    }

    [Fact]
    public async Task Should_keep_each_tenants_scores_and_report_to_itself()
    {
        var mine = await OpenShopAsync();
        var theirs = await OpenShopAsync();
        var read = fx.As(mine.Tenant, "segments.read");

        var report = await fx.Client.GetRfmReportAsync(new GetRfmReportRequest(), read);
        Assert.Equal(10, report.Customers);
        Assert.Equal((double)RfmByHand.Figures(RfmByHand.Compute(mine.ByHand, report.AsOf.ToDateTime(), 365)).Revenue, report.Revenue, 1e-9);
        var scores = await fx.AllScoresAsync(mine.Tenant);
        Assert.Empty(scores.Select(s => Guid.Parse(s.ContactId)).Intersect(theirs.Customers));
        var other = await fx.Client.ListRfmScoresAsync(new ListRfmScoresRequest { ContactId = theirs.Customers[0].ToString() }, read);
        Assert.Empty(other.Scores);

        // Another tenant's table edit leaves this one's alone.
        var table = new RfmTable();
        table.Segments.Add(new RfmSegmentRule { Name = "Everyone", RMin = 1, RMax = 5, FMin = 1, FMax = 5, MMin = 1, MMax = 5 });
        await fx.Client.SetRfmTableAsync(new SetRfmTableRequest { Table = table }, fx.As(theirs.Tenant));
        Assert.All(await fx.AllScoresAsync(theirs.Tenant), s => Assert.Equal("Everyone", s.Segment));
        Assert.Equal(scores, await fx.AllScoresAsync(mine.Tenant));
        Assert.Equal(RfmByHand.IssueTable.Length, (await fx.Client.GetRfmTableAsync(new GetRfmTableRequest(), read)).Segments.Count);
    }

    [Fact]
    public async Task Should_forget_an_erased_contacts_scores()
    {
        var shop = await OpenShopAsync();
        await fx.PublishAsync(new ContactErased(shop.Tenant, shop.Customers[0], DateTimeOffset.UtcNow));
        await fx.WaitUntilAsync("SELECT count(*) FROM erased_contacts WHERE tenant_id = @tenant", new { tenant = shop.Tenant }, 1);
        Assert.Equal(0L, await fx.QueryScalarAsync<long>("SELECT count(*) FROM rfm_scores WHERE tenant_id = @tenant AND contact_id = @contact",
            new { tenant = shop.Tenant, contact = shop.Customers[0] }));
        Assert.Equal(9L, await fx.QueryScalarAsync<long>("SELECT count(*) FROM rfm_scores WHERE tenant_id = @tenant", new { tenant = shop.Tenant }));
    }
}
