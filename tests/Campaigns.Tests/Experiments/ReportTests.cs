using Crm.Campaigns.Tests.Infrastructure;
using Crm.Campaigns.V1;
using Crm.Contracts.Contacts;
using Grpc.Core;
using MassTransit;

namespace Crm.Campaigns.Tests.Experiments;

[Collection(CampaignsCollection.Name)]
public sealed class ReportTests(CampaignsFixture fixture) : IAsyncLifetime
{
    private IBusControl _bus = null!;

    public async Task InitializeAsync()
    {
        _bus = Bus.Factory.CreateUsingRabbitMq(cfg => cfg.Host(new Uri(fixture.RabbitMqUri)));
        await _bus.StartAsync();
    }

    public Task DisposeAsync() => _bus.StopAsync();

    private async Task<Guid> PublishAsync<T>(T message, Guid? messageId = null) where T : class
    {
        var id = messageId ?? Guid.NewGuid();
        await _bus.Publish(message, ctx => ctx.MessageId = id);
        return id;
    }

    private static RecordedOrder Order(Guid contact, DateTimeOffset at, decimal total, string status = "completed", string? id = null) =>
        new(contact, id ?? "o-" + Guid.NewGuid().ToString("N")[..10], at, "KRW", total, status, ["sku-1"], ["shoes"]);

    [Fact]
    public async Task Should_hold_out_a_stable_hashed_share_count_its_conversions_and_compute_lift_as_plain_arithmetic_does()
    {
        var tenant = CampaignsFixture.NewTenant();
        var t0 = fixture.Clock.GetUtcNow().AddDays(-3);
        var s = new ExperimentScenario(fixture, tenant);
        await s.CreateAsync("Spring sale", 0.2, [("a", "10% off", 1), ("b", "Free shipping", 1)], 600, t0);

        // The holdout is exactly the contacts whose md5 draw falls below the share, recomputed here.
        var expectedHoldout = s.Contacts.Where(c => ExperimentScenario.Bucket("holdout", s.CampaignId, c) < 0.2).Order().ToList();
        Assert.Equal(expectedHoldout, s.Holdout.Order().ToList());
        Assert.InRange(expectedHoldout.Count, 80, 160);
        Assert.True(s.InVariant("a").Count() > 150 && s.InVariant("b").Count() > 150);
        Assert.Equal(expectedHoldout.Count, await fixture.QueryScalarAsync<long>(
            "SELECT count(*) FROM recipients WHERE run_id = @RunId AND status = 'holdout' AND variant_id IS NULL", new { s.RunId }));

        var holdout = s.Holdout.ToList();
        var a = s.InVariant("a").ToList();
        var b = s.InVariant("b").ToList();
        var holdoutBuyers = holdout.Take(holdout.Count / 10).ToList();
        var aBuyers = a.Take(a.Count * 3 / 10).ToList();
        var bBuyers = b.Take(b.Count * 15 / 100).ToList();
        var orders = holdoutBuyers.Select(c => Order(c, t0.AddDays(1), 100m))
            .Concat(aBuyers.Select(c => Order(c, t0.AddHours(5), 50m)))
            .Concat(bBuyers.Select(c => Order(c, t0.AddDays(6), 70m)))
            .ToList();
        // Not conversions: after the 7-day window, before the send, a cancelled order.
        var notBuyers = a.Skip(aBuyers.Count).Take(3).ToList();
        var ignored = new List<RecordedOrder>
        {
            Order(notBuyers[0], t0.AddDays(8), 999m), Order(notBuyers[1], t0.AddHours(-1), 999m), Order(notBuyers[2], t0.AddDays(1), 999m, "cancelled"),
        };
        // A second order of a buyer counts as revenue but not as a second converted recipient.
        var repeat = Order(aBuyers[0], t0.AddDays(2), 25m);

        using var consumed = new ConsumedBy(fixture, "OrderGoalConsumer");
        var message = new TransactionsRecorded(tenant, [.. orders, .. ignored, repeat]);
        var first = await PublishAsync(message);
        await PublishAsync(message, first);  // redelivered: the inbox drops it
        var replay = await PublishAsync(new TransactionsRecorded(tenant, orders.Take(5).ToList()));  // the same orders again: natural keys
        await consumed.WaitAsync(first, times: 2);
        await consumed.WaitAsync(replay);

        var report = await fixture.Client.GetCampaignReportAsync(new GetCampaignReportRequest { CampaignId = s.CampaignId.ToString() },
            fixture.As(tenant, "campaigns.read"));
        var byId = report.Variants.ToDictionary(v => v.VariantId);
        Assert.Equal(["a", "b", "holdout"], report.Variants.Select(v => v.VariantId));

        var h = byId["holdout"];
        Assert.True(h.Holdout);
        Assert.Equal(holdout.Count, h.Recipients);
        Assert.Equal(0, h.Sent);
        Assert.Equal(holdoutBuyers.Count, h.Converted);
        Assert.Equal(holdoutBuyers.Count * 100m, decimal.Parse(h.Revenue, System.Globalization.CultureInfo.InvariantCulture));
        Assert.Null(h.Lift);

        var va = byId["a"];
        Assert.Equal(a.Count, va.Recipients);
        Assert.Equal(a.Count, va.Sent);
        Assert.Equal(aBuyers.Count, va.Converted);
        Assert.Equal(aBuyers.Count * 50m + 25m, decimal.Parse(va.Revenue, System.Globalization.CultureInfo.InvariantCulture));
        Assert.Equal(Math.Round((aBuyers.Count * 50m + 25m) / a.Count, 4),
            decimal.Parse(va.RevenuePerRecipient, System.Globalization.CultureInfo.InvariantCulture));
        Assert.Equal(bBuyers.Count, byId["b"].Converted);

        // The lift, by hand: difference of rates, unpooled standard error, ±1.96 for 95%.
        foreach (var (v, buyers, size) in new[] { (va, aBuyers.Count, a.Count), (byId["b"], bBuyers.Count, b.Count) })
        {
            double p1 = (double)buyers / size, p0 = (double)holdoutBuyers.Count / holdout.Count;
            var se = Math.Sqrt(p1 * (1 - p1) / size + p0 * (1 - p0) / holdout.Count);
            Assert.Equal(p1, v.ConversionRate, 12);
            Assert.Equal(p1 - p0, v.Lift.Absolute, 12);
            Assert.Equal((p1 - p0) / p0, v.Lift.Relative, 12);
            Assert.Equal(p1 - p0 - 1.96 * se, v.Lift.CiLow, 3);
            Assert.Equal(p1 - p0 + 1.96 * se, v.Lift.CiHigh, 3);
            Assert.Equal(p1 - p0 - 1.96 * se > 0, v.Lift.Significant);
        }
        // 30% against 10% on groups of this size is well clear of zero; 15% against 10% is not.
        Assert.True(va.Lift.Significant);
        Assert.True(va.Lift.PValue < 0.001);
        Assert.False(byId["b"].Lift.Significant);
        Assert.Contains("last touch", report.Attribution);
    }

    [Fact]
    public async Task Should_attribute_a_named_event_to_the_last_touch_and_keep_machine_opens_apart()
    {
        var tenant = CampaignsFixture.NewTenant();
        var t0 = fixture.Clock.GetUtcNow().AddDays(-1);
        var earlier = new ExperimentScenario(fixture, tenant);
        await earlier.CreateAsync("Welcome", 0, [], 20, t0.AddHours(-2), goalKind: "event", goalEvent: "signup_completed");
        var later = new ExperimentScenario(fixture, tenant);
        await later.CreateAsync("Reminder", 0, [], 0, t0, goalKind: "event", goalEvent: "signup_completed");
        // The same contacts got the second campaign's message two hours later.
        await fixture.QueryScalarAsync<int>("""
            INSERT INTO recipients (tenant_id, run_id, contact_id, campaign_id, variant_id, status, message_id, outcome_at)
            SELECT tenant_id, @RunId, contact_id, @CampaignId, 'default', 'sent', gen_random_uuid(), @t0 FROM recipients WHERE run_id = @early;
            INSERT INTO outcomes (tenant_id, run_id, contact_id, message_id, kind, channel, occurred_at)
            SELECT tenant_id, run_id, contact_id, message_id, 'sent', 'email', @t0 FROM recipients WHERE run_id = @RunId;
            SELECT 0
            """, new { later.RunId, later.CampaignId, t0 = t0.UtcDateTime, early = earlier.RunId });

        var c = earlier.Contacts;
        var events = new List<RecordedEngagement>
        {
            new("e1", c[0], "custom", "signup_completed", null, null, null, t0.AddHours(1)),       // after both: the later campaign
            new("e2", c[1], "custom", "signup_completed", null, null, null, t0.AddHours(-1)),      // between: the earlier one
            new("e3", c[2], "custom", "something_else", null, null, null, t0.AddHours(1)),          // not a goal
            new("o1", c[3], "opened", null, "email", null, later.CampaignId.ToString(), t0.AddMinutes(1), """{"machine_open":true}"""),
            new("o2", c[4], "opened", null, "email", null, later.CampaignId.ToString(), t0.AddMinutes(5)),
            new("k1", c[4], "clicked", null, "email", null, later.CampaignId.ToString(), t0.AddMinutes(6)),
        };
        using var consumed = new ConsumedBy(fixture, "EngagementGoalConsumer");
        await consumed.WaitAsync(await PublishAsync(new EngagementRecorded(tenant, events)));

        var read = fixture.As(tenant, "campaigns.read");
        var late = (await fixture.Client.GetCampaignReportAsync(new GetCampaignReportRequest { CampaignId = later.CampaignId.ToString() }, read)).Variants.Single();
        var early = (await fixture.Client.GetCampaignReportAsync(new GetCampaignReportRequest { CampaignId = earlier.CampaignId.ToString() }, read)).Variants.Single();
        Assert.Equal((1, 1), (late.Converted, early.Converted));
        Assert.Equal((1, 1, 1), (late.Opened, late.MachineOpened, late.Clicked));
        Assert.Equal((0, 0), (early.Opened, early.MachineOpened));
    }

    [Fact]
    public async Task Should_attribute_an_order_whose_send_outcome_was_recorded_after_it()
    {
        var tenant = CampaignsFixture.NewTenant();
        var t0 = fixture.Clock.GetUtcNow().AddDays(-2);
        var s = new ExperimentScenario(fixture, tenant);
        await s.CreateAsync("Late outcomes", 0, [], 10, t0, recordSends: false);
        using var consumed = new ConsumedBy(fixture, "OrderGoalConsumer");
        await consumed.WaitAsync(await PublishAsync(new TransactionsRecorded(tenant, [Order(s.Contacts[0], t0.AddHours(3), 40m)])));
        Assert.Equal(0, await fixture.QueryScalarAsync<long>("SELECT count(*) FROM conversions WHERE campaign_id = @CampaignId", new { s.CampaignId }));

        await s.RecordSendsAsync(t0);  // Delivery's MessagesSent consumed only now
        var report = await fixture.Client.GetCampaignReportAsync(new GetCampaignReportRequest { CampaignId = s.CampaignId.ToString() },
            fixture.As(tenant, "campaigns.read"));
        Assert.Equal(1, report.Variants.Single().Converted);
        Assert.Equal("40", decimal.Parse(report.Variants.Single().Revenue, System.Globalization.CultureInfo.InvariantCulture).ToString("0.##"));
    }

    [Fact]
    public async Task Should_export_csv_with_formula_cells_neutralised()
    {
        var tenant = CampaignsFixture.NewTenant();
        var s = new ExperimentScenario(fixture, tenant);
        await s.CreateAsync("=HYPERLINK(\"http://evil\",\"x\")", 0.1,
            [("+a", "@SUM(1,2)", 1), ("-b", "\tcmd", 1), ("c", "\rboom", 1)], 120, fixture.Clock.GetUtcNow());

        var call = fixture.Client.ExportCampaignReport(new ExportCampaignReportRequest { CampaignId = s.CampaignId.ToString() },
            fixture.As(tenant, "campaigns.read"));
        var csv = new System.Text.StringBuilder();
        await foreach (var chunk in call.ResponseStream.ReadAllAsync()) csv.Append(chunk.Csv);
        var rows = Csv.Parse(csv.ToString());

        Assert.Equal("campaign", rows[0][0]);
        var body = rows.Skip(1).ToList();
        Assert.Equal(["'+a", "'-b", "c", "holdout"], body.Select(r => r[2]));
        Assert.All(body, r => Assert.Equal("'=HYPERLINK(\"http://evil\",\"x\")", r[0]));
        Assert.Equal(["'@SUM(1,2)", "'\tcmd", "'\rboom", "Holdout"], body.Select(r => r[3]));
        // No text cell starts with a formula trigger; numbers stay numbers.
        Assert.All(body.SelectMany(r => r), cell => Assert.False(cell.Length > 0 && "=+@\t\r".Contains(cell[0]), cell));
        Assert.All(body, r => Assert.True(long.TryParse(r[5], out _)));
    }

    [Fact]
    public async Task Should_refuse_another_tenants_report()
    {
        var owner = CampaignsFixture.NewTenant();
        var s = new ExperimentScenario(fixture, owner);
        await s.CreateAsync("Private", 0.1, [("a", "A", 1)], 20, fixture.Clock.GetUtcNow());
        var other = fixture.As(CampaignsFixture.NewTenant(), "campaigns.read");

        var e = await Assert.ThrowsAsync<RpcException>(() =>
            fixture.Client.GetCampaignReportAsync(new GetCampaignReportRequest { CampaignId = s.CampaignId.ToString() }, other).ResponseAsync);
        Assert.Equal(StatusCode.NotFound, e.StatusCode);
        var export = fixture.Client.ExportCampaignReport(new ExportCampaignReportRequest { CampaignId = s.CampaignId.ToString() }, other);
        e = await Assert.ThrowsAsync<RpcException>(async () => await export.ResponseStream.MoveNext());
        Assert.Equal(StatusCode.NotFound, e.StatusCode);
        // Without campaigns.read, not even the owner's.
        e = await Assert.ThrowsAsync<RpcException>(() => fixture.Client.GetCampaignReportAsync(
            new GetCampaignReportRequest { CampaignId = s.CampaignId.ToString() }, fixture.As(owner, "campaigns.write")).ResponseAsync);
        Assert.Equal(StatusCode.PermissionDenied, e.StatusCode);
        // And the owner's reads it.
        var mine = await fixture.Client.GetCampaignReportAsync(new GetCampaignReportRequest { CampaignId = s.CampaignId.ToString() }, fixture.As(owner, "campaigns.read"));
        Assert.Equal(20, mine.Variants.Sum(v => v.Recipients));
        var bad = await Assert.ThrowsAsync<RpcException>(() => fixture.Client.GetCampaignReportAsync(
            new GetCampaignReportRequest { CampaignId = "nope" }, fixture.As(owner, "campaigns.read")).ResponseAsync);
        Assert.Equal(StatusCode.InvalidArgument, bad.StatusCode);
    }
}

/// <summary>An RFC 4180 reader, enough for the export (quoted cells with commas, quotes and line breaks).</summary>
internal static class Csv
{
    public static List<List<string>> Parse(string text)
    {
        var rows = new List<List<string>>();
        var row = new List<string>();
        var cell = new System.Text.StringBuilder();
        var quoted = false;
        for (var i = 0; i < text.Length; i++)
        {
            var ch = text[i];
            if (quoted)
            {
                if (ch == '"' && i + 1 < text.Length && text[i + 1] == '"') { cell.Append('"'); i++; }
                else if (ch == '"') quoted = false;
                else cell.Append(ch);
            }
            else if (ch == '"') quoted = true;
            else if (ch == ',') { row.Add(cell.ToString()); cell.Clear(); }
            else if (ch == '\r' && i + 1 < text.Length && text[i + 1] == '\n') { row.Add(cell.ToString()); cell.Clear(); rows.Add(row); row = []; i++; }
            else cell.Append(ch);
        }
        if (cell.Length > 0 || row.Count > 0) { row.Add(cell.ToString()); rows.Add(row); }
        return rows;
    }
}
