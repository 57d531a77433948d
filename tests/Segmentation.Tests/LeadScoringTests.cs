using System.Net;
using System.Text.Json;
using Crm.BuildingBlocks.Tenancy;
using Crm.Contracts.Contacts;
using Crm.Contracts.Segmentation;
using Crm.Segmentation.Tests.Infrastructure;
using Crm.Segmentation.V1;
using Google.Rpc;
using Grpc.Core;

namespace Crm.Segmentation.Tests;

[Collection(SegmentationCollection.Name)]
public sealed class LeadScoringTests(SegmentationFixture fx)
{
    [Fact]
    public async Task Should_publish_LeadQualified_once_when_the_score_crosses_the_threshold()
    {
        var tenant = SegmentationFixture.NewTenant();
        await SetRulesAsync(tenant, threshold: 60, halfLifeDays: 30, Fit("fit", 15, "industry", "saas"), Demo("demo", 50));
        var lead = Guid.NewGuid();
        await UpsertAsync(tenant, lead, """{"industry": "saas"}""");
        await PublishEventsAsync(tenant, DemoRequested(lead, "e-1", fx.Clock.GetUtcNow()));

        var qualified = Assert.Single(await fx.Published.WaitAsync<LeadQualified>(e => e.TenantId == tenant && e.ContactId == lead));
        Assert.InRange(qualified.Score, 64.99, 65);
        Assert.Equal(60, qualified.Threshold);

        // More points above the threshold publish nothing more. Proof that they were handled: the stored score,
        // written in the same transaction as any event would have been; and a witness qualifying afterwards,
        // whose event the outbox relays after anything the first contact's rescoring could have enqueued.
        await PublishEventsAsync(tenant, DemoRequested(lead, "e-2", fx.Clock.GetUtcNow()));
        await WaitScoreAsync(tenant, lead, 114.99, 115);
        var witness = Guid.NewGuid();
        await UpsertAsync(tenant, witness, """{"industry": "saas"}""");
        await PublishEventsAsync(tenant, DemoRequested(witness, "w-1", fx.Clock.GetUtcNow()));
        await fx.Published.WaitAsync<LeadQualified>(e => e.TenantId == tenant && e.ContactId == witness);
        Assert.Single(fx.Published.All<LeadQualified>(e => e.TenantId == tenant && e.ContactId == lead));
        Assert.True(await fx.QueryScalarAsync<bool>(
            "SELECT qualified AND qualified_at IS NOT NULL FROM lead_scores WHERE tenant_id = @tenant AND contact_id = @lead", new { tenant, lead }));
    }

    [Fact]
    public async Task Should_qualify_again_after_decaying_below_the_threshold_and_rising_over_it()
    {
        var tenant = SegmentationFixture.NewTenant();
        // A host that looks for decayed scores every 100 ms (the default is hourly).
        await using var scheduled = await fx.StartHostAsync(new Dictionary<string, string?> { ["Segmentation:LeadScoreInterval"] = "00:00:00.100" });
        await SetRulesAsync(tenant, threshold: 60, halfLifeDays: 1, Fit("fit", 15, "industry", "saas"), Demo("demo", 50));
        var lead = Guid.NewGuid();
        await UpsertAsync(tenant, lead, """{"industry": "saas"}""");
        await PublishEventsAsync(tenant, DemoRequested(lead, "e-1", fx.Clock.GetUtcNow()));
        await fx.Published.WaitAsync<LeadQualified>(e => e.TenantId == tenant && e.ContactId == lead);

        var advanced = TimeSpan.FromDays(2);
        fx.Clock.Advance(advanced);
        try
        {
            // Two half-lives later the request is worth 12.5: 27.5 in all, below 60, with no event having arrived.
            await WaitScoreAsync(tenant, lead, 27.4, 27.5);
            Assert.True(await fx.QueryScalarAsync<bool>(
                "SELECT NOT qualified AND qualified_at IS NULL FROM lead_scores WHERE tenant_id = @tenant AND contact_id = @lead", new { tenant, lead }));

            await PublishEventsAsync(tenant, DemoRequested(lead, "e-2", fx.Clock.GetUtcNow()));
            var both = await fx.Published.WaitAsync<LeadQualified>(e => e.TenantId == tenant && e.ContactId == lead, count: 2);
            Assert.Equal(2, both.Count);
            Assert.InRange(both[1].Score, 77.4, 77.5);
        }
        finally
        {
            fx.Clock.Advance(-advanced);
        }
    }

    [Fact]
    public async Task Should_cap_a_rules_points_per_UTC_day()
    {
        var tenant = SegmentationFixture.NewTenant();
        await SetRulesAsync(tenant, threshold: 1000, halfLifeDays: 0,
            new LeadScoringRule { RuleId = "clicks", Points = 10, MaxPointsPerDay = 25, Engagement = EngagementKind.Clicked });
        var lead = Guid.NewGuid();
        var day = new DateTimeOffset(fx.Clock.GetUtcNow().UtcDateTime.Date.AddDays(-1), TimeSpan.Zero);
        // The day before: 2 clicks, 20 points. The day: 4 clicks, 10 + 10 + 5 + 0 under the cap of 25.
        await PublishEventsAsync(tenant,
            Click(lead, "c-1", day.AddMinutes(-30)), Click(lead, "c-2", day.AddMinutes(-15)),
            Click(lead, "c-3", day.AddHours(10)), Click(lead, "c-4", day.AddHours(10).AddMinutes(1)),
            Click(lead, "c-5", day.AddHours(10).AddMinutes(2)), Click(lead, "c-6", day.AddDays(1).AddSeconds(-1)));
        await WaitScoreAsync(tenant, lead, 45, 45);

        var score = await fx.Client.GetLeadScoreAsync(new GetLeadScoreRequest { ContactId = lead.ToString() }, fx.As(tenant, Scope.SegmentsRead));
        Assert.Equal(45, score.Score);
        Assert.Equal([0, 5, 10, 10, 10, 10], score.Items.Select(i => i.Awarded).Order());
        Assert.All(score.Items, i => Assert.Equal(i.Awarded, i.Points)); // no decay
        Assert.Equal(2, score.Items.Count(i => i.Reason.Contains("capped at 25 points per UTC day", StringComparison.Ordinal)));
        Assert.Equal(0, score.Items[0].Awarded); // most recent first: 23:59:59, over the cap
    }

    [Fact]
    public async Task Should_count_custom_events_by_name_and_every_property()
    {
        var tenant = SegmentationFixture.NewTenant();
        await SetRulesAsync(tenant, threshold: 1000, halfLifeDays: 0, new LeadScoringRule
        {
            RuleId = "pro-demo", Points = 50,
            CustomEvent = new CustomEventTrigger
            {
                Name = "demo_requested",
                Properties =
                {
                    new PropertyMatch { Name = "plan", Equals_ = new Value { StringValue = "pro" } },
                    new PropertyMatch { Name = "seats", Equals_ = new Value { NumberValue = 5 } },
                },
            },
        });
        var lead = Guid.NewGuid();
        var now = fx.Clock.GetUtcNow();
        // One batch, so the score is computed over all of them at once: only the last matches.
        await PublishEventsAsync(tenant,
            Custom(lead, "x-1", "demo_requested", """{"plan": "free", "seats": 5}""", now),
            Custom(lead, "x-2", "signed_up", """{"plan": "pro", "seats": 5}""", now),
            Custom(lead, "x-3", "demo_requested", """{"plan": "pro"}""", now),
            new RecordedEngagement("x-4", lead, "clicked", "demo_requested", "email", null, null, now, """{"plan": "pro", "seats": 5}"""),
            Custom(lead, "x-5", "demo_requested", """{"plan": "pro", "seats": 5.0, "source": "ads"}""", now));
        await WaitScoreAsync(tenant, lead, 50, 50);

        var score = await fx.Client.GetLeadScoreAsync(new GetLeadScoreRequest { ContactId = lead.ToString() }, fx.As(tenant, Scope.SegmentsRead));
        var item = Assert.Single(score.Items);
        Assert.Equal("pro-demo", item.RuleId);
        Assert.Equal("custom event \"demo_requested\" with plan = \"pro\", seats = 5: event x-5", item.Reason);
    }

    [Fact]
    public async Task Should_count_an_attribute_fit_once_while_the_profile_matches()
    {
        var tenant = SegmentationFixture.NewTenant();
        await SetRulesAsync(tenant, threshold: 1000, halfLifeDays: 1,
            Fit("saas", 15, "industry", "saas"),
            new LeadScoringRule { RuleId = "size", Points = 10, Attribute = new AttributeTrigger { Attribute = "employees", Equals_ = new Value { NumberValue = 500 } } });
        var lead = Guid.NewGuid();
        var at = fx.Clock.GetUtcNow();
        await UpsertAsync(tenant, lead, """{"industry": "saas", "employees": 500}""", at);
        await WaitScoreAsync(tenant, lead, 25, 25);
        await UpsertAsync(tenant, lead, """{"industry": "saas", "employees": 500, "city": "Seoul"}""", at.AddSeconds(1));
        await WaitUntilComputedAfterAsync(tenant, lead, at.AddSeconds(1));
        Assert.Equal(25, await ScoreAsync(tenant, lead)); // the same profile again: still counted once, and fit does not decay
        Assert.False(await fx.QueryScalarAsync<bool>("SELECT decays FROM lead_scores WHERE tenant_id = @tenant AND contact_id = @lead", new { tenant, lead }));

        await UpsertAsync(tenant, lead, """{"industry": "retail", "employees": 500}""", at.AddSeconds(2));
        await WaitScoreAsync(tenant, lead, 10, 10);
    }

    [Fact]
    public async Task Should_explain_a_score_item_by_item_over_gRPC_and_REST()
    {
        var tenant = SegmentationFixture.NewTenant();
        await SetRulesAsync(tenant, threshold: 100, halfLifeDays: 1,
            new LeadScoringRule { RuleId = "orders", Points = 20, PerOrder = true },
            new LeadScoringRule { RuleId = "clicks", Points = 10, Engagement = EngagementKind.Clicked },
            Fit("pro", 5, "plan", "pro"));
        var lead = Guid.NewGuid();
        var now = fx.Clock.GetUtcNow();
        await UpsertAsync(tenant, lead, """{"plan": "pro"}""");
        await fx.PublishAsync(new TransactionsRecorded(tenant, [
            new RecordedOrder(lead, "o-1", now.AddDays(-1), "KRW", 30000m, "completed", ["sku-1"], []),
            new RecordedOrder(lead, "o-2", now.AddDays(-1), "KRW", 90000m, "refunded", ["sku-2"], []),
        ]));
        await PublishEventsAsync(tenant, new RecordedEngagement("k-1", lead, "clicked", null, "email", "m-1", "spring", now.AddDays(-2)));
        // 5 (fit) + 20 halved once + 10 halved twice, a little less as the clock has moved on.
        await WaitScoreAsync(tenant, lead, 17.49, 17.5);

        var score = await fx.Client.GetLeadScoreAsync(new GetLeadScoreRequest { ContactId = lead.ToString() }, fx.As(tenant, Scope.SegmentsRead));
        Assert.InRange(score.Score, 17.49, 17.5);
        Assert.False(score.Qualified);
        Assert.NotNull(score.ComputedAt);
        Assert.Equal(score.Score, score.Items.Sum(i => i.Points), 9);
        Assert.Collection(score.Items,
            fit =>
            {
                Assert.Equal(("pro", 5.0, 5.0), (fit.RuleId, fit.Awarded, fit.Points));
                Assert.Null(fit.OccurredAt);
                Assert.Equal("attribute plan = \"pro\": the profile matches (counted once, no decay)", fit.Reason);
            },
            order =>
            {
                Assert.Equal(("orders", 20.0), (order.RuleId, order.Awarded));
                Assert.InRange(order.Points, 9.999, 10);
                Assert.Equal("a completed order: order o-1 (30000 KRW)", order.Reason);
                Assert.Equal(now.AddDays(-1).UtcDateTime, order.OccurredAt.ToDateTime(), TimeSpan.FromMilliseconds(1));
            },
            click =>
            {
                Assert.Equal(("clicks", 10.0), (click.RuleId, click.Awarded));
                Assert.InRange(click.Points, 2.499, 2.5);
                Assert.Equal("clicked a message: event k-1 on email, campaign spring", click.Reason);
            });

        using var http = fx.Host.Rest(fx.Host.Tokens.Issue(tenant, [Scope.SegmentsRead]));
        using var response = await http.GetAsync($"/v1/lead-scores/{lead}");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        // The scheduled decay may have rescored the contact between the two reads: each answer adds up by itself.
        var restScore = json.RootElement.GetProperty("score").GetDouble();
        Assert.Equal(restScore, json.RootElement.GetProperty("items").EnumerateArray().Sum(i => i.GetProperty("points").GetDouble()), 9);
        Assert.Equal(score.Score, restScore, 3);
        Assert.Equal(3, json.RootElement.GetProperty("items").GetArrayLength());
    }

    [Fact]
    public async Task Should_rescore_every_contact_when_the_rules_change()
    {
        var tenant = SegmentationFixture.NewTenant();
        var lead = Guid.NewGuid();
        await UpsertAsync(tenant, lead, """{"industry": "saas"}""");
        await PublishEventsAsync(tenant, DemoRequested(lead, "e-1", fx.Clock.GetUtcNow()));
        await fx.WaitUntilAsync("SELECT count(*) FROM engagement WHERE tenant_id = @tenant", new { tenant }, 1);
        await fx.WaitRefreshedAsync(tenant);
        Assert.Equal(0L, await fx.QueryScalarAsync<long>("SELECT count(*) FROM lead_scores WHERE tenant_id = @tenant", new { tenant })); // no rules, no scores

        var saved = await SetRulesAsync(tenant, threshold: 10, halfLifeDays: 0, Fit("", 15, "industry", "saas"), Demo("", 50));
        Assert.Equal(["rule-1", "rule-2"], saved.Rules.Select(r => r.RuleId)); // ids given to rules without one
        await fx.Published.WaitAsync<LeadQualified>(e => e.TenantId == tenant && e.ContactId == lead);
        await WaitScoreAsync(tenant, lead, 65, 65);

        await SetRulesAsync(tenant, threshold: 10, halfLifeDays: 0, Demo("demo", 5));
        await WaitScoreAsync(tenant, lead, 5, 5);
        var read = await fx.Client.GetLeadScoringRulesAsync(new GetLeadScoringRulesRequest(), fx.As(tenant, Scope.SegmentsRead));
        Assert.Equal(("demo", 5.0, "demo_requested", 10.0), (read.Rules.Single().RuleId, read.Rules.Single().Points, read.Rules.Single().CustomEvent.Name, read.MqlThreshold));
    }

    [Fact]
    public async Task Should_refuse_invalid_rules_naming_each_field()
    {
        var tenant = SegmentationFixture.NewTenant();
        var rules = new LeadScoringRules
        {
            MqlThreshold = 0,
            HalfLifeDays = -1,
            Rules =
            {
                Demo("demo", 50),
                new LeadScoringRule { RuleId = "zero", Points = 0, Engagement = EngagementKind.Opened },
                new LeadScoringRule { RuleId = "none", Points = 1 },
                new LeadScoringRule { RuleId = "nameless", Points = 1, CustomEvent = new CustomEventTrigger() },
                new LeadScoringRule { RuleId = "demo", Points = 1, Engagement = EngagementKind.Received },
                new LeadScoringRule { RuleId = "fit", Points = 1, MaxPointsPerDay = 5, Attribute = new AttributeTrigger { Attribute = "plan" } },
            },
        };
        var status = await FailsWith(StatusCode.InvalidArgument,
            () => fx.Client.SetLeadScoringRulesAsync(new SetLeadScoringRulesRequest { Rules = rules }, fx.As(tenant, Scope.SegmentsWrite)).ResponseAsync);
        Assert.Equal(
            ["rules.mql_threshold", "rules.half_life_days", "rules.rules[1].points", "rules.rules[2]", "rules.rules[3].custom_event.name",
             "rules.rules[4].rule_id", "rules.rules[4].engagement", "rules.rules[5].attribute.equals", "rules.rules[5].max_points_per_day"],
            ViolatedFields(status));

        status = await FailsWith(StatusCode.InvalidArgument,
            () => fx.Client.SetLeadScoringRulesAsync(new SetLeadScoringRulesRequest(), fx.As(tenant, Scope.SegmentsWrite)).ResponseAsync);
        Assert.Equal(["rules"], ViolatedFields(status));
        await FailsWith(StatusCode.InvalidArgument,
            () => fx.Client.GetLeadScoreAsync(new GetLeadScoreRequest { ContactId = "c-1" }, fx.As(tenant, Scope.SegmentsRead)).ResponseAsync);
    }

    [Fact]
    public async Task Should_keep_one_tenants_rules_and_scores_from_another()
    {
        var a = SegmentationFixture.NewTenant();
        var b = SegmentationFixture.NewTenant();
        await SetRulesAsync(a, threshold: 60, halfLifeDays: 0, Demo("demo", 50));
        var lead = Guid.NewGuid();
        await PublishEventsAsync(a, DemoRequested(lead, "e-1", fx.Clock.GetUtcNow()));
        await WaitScoreAsync(a, lead, 50, 50);

        await FailsWith(StatusCode.NotFound,
            () => fx.Client.GetLeadScoreAsync(new GetLeadScoreRequest { ContactId = lead.ToString() }, fx.As(b, Scope.SegmentsRead)).ResponseAsync);
        var rulesOfB = await fx.Client.GetLeadScoringRulesAsync(new GetLeadScoringRulesRequest(), fx.As(b, Scope.SegmentsRead));
        Assert.Empty(rulesOfB.Rules);
        await FailsWith(StatusCode.PermissionDenied,
            () => fx.Client.GetLeadScoreAsync(new GetLeadScoreRequest { ContactId = lead.ToString() }, fx.As(a, Scope.ContactsRead)).ResponseAsync);
        await FailsWith(StatusCode.PermissionDenied, () => fx.Client.SetLeadScoringRulesAsync(
            new SetLeadScoringRulesRequest { Rules = new LeadScoringRules { MqlThreshold = 1 } }, fx.As(a, Scope.SegmentsRead)).ResponseAsync);
        Assert.Equal(50, (await fx.Client.GetLeadScoreAsync(new GetLeadScoreRequest { ContactId = lead.ToString() }, fx.As(a, Scope.SegmentsRead))).Score);
    }

    [Fact]
    public async Task Should_forget_an_erased_contacts_lead_score_and_tier()
    {
        var tenant = SegmentationFixture.NewTenant();
        await SetRulesAsync(tenant, threshold: 60, halfLifeDays: 0, new LeadScoringRule { RuleId = "orders", Points = 5, PerOrder = true });
        await fx.Client.SetTiersAsync(new SetTiersRequest { Settings = new TierSettings
        {
            Measure = TierMeasure.Spend, Tiers = { new TierLevel { Name = "silver", MinValue = 100 } },
        } }, fx.As(tenant, Scope.SegmentsWrite));
        var contact = Guid.NewGuid();
        await fx.PublishAsync(new TransactionsRecorded(tenant, [new RecordedOrder(contact, "o-1", fx.Clock.GetUtcNow(), "KRW", 500m, "completed", [], [])]));
        await WaitScoreAsync(tenant, contact, 5, 5);
        await fx.WaitUntilAsync("SELECT count(*) FROM contact_tiers WHERE tenant_id = @tenant AND tier = 'silver'", new { tenant }, 1);

        await fx.PublishAsync(new ContactErased(tenant, contact, fx.Clock.GetUtcNow()));
        await fx.WaitUntilAsync("SELECT count(*) FROM erased_contacts WHERE tenant_id = @tenant", new { tenant }, 1);
        Assert.Equal(0L, await fx.QueryScalarAsync<long>(
            "SELECT (SELECT count(*) FROM lead_scores WHERE tenant_id = @tenant) + (SELECT count(*) FROM contact_tiers WHERE tenant_id = @tenant)", new { tenant }));
        await FailsWith(StatusCode.NotFound,
            () => fx.Client.GetLeadScoreAsync(new GetLeadScoreRequest { ContactId = contact.ToString() }, fx.As(tenant, Scope.SegmentsRead)).ResponseAsync);
    }

    private async Task<LeadScoringRules> SetRulesAsync(string tenant, double threshold, double halfLifeDays, params LeadScoringRule[] rules)
    {
        var request = new SetLeadScoringRulesRequest { Rules = new LeadScoringRules { MqlThreshold = threshold, HalfLifeDays = halfLifeDays, Rules = { rules } } };
        return await fx.Client.SetLeadScoringRulesAsync(request, fx.As(tenant, Scope.SegmentsWrite));
    }

    private static LeadScoringRule Fit(string id, double points, string attribute, string value) =>
        new() { RuleId = id, Points = points, Attribute = new AttributeTrigger { Attribute = attribute, Equals_ = new Value { StringValue = value } } };

    private static LeadScoringRule Demo(string id, double points) =>
        new() { RuleId = id, Points = points, CustomEvent = new CustomEventTrigger { Name = "demo_requested" } };

    private static RecordedEngagement DemoRequested(Guid contact, string id, DateTimeOffset at) =>
        Custom(contact, id, "demo_requested", """{"plan": "pro"}""", at);

    private static RecordedEngagement Custom(Guid contact, string id, string name, string properties, DateTimeOffset at) =>
        new(id, contact, "custom", name, null, null, null, at, properties);

    private static RecordedEngagement Click(Guid contact, string id, DateTimeOffset at) =>
        new(id, contact, "clicked", null, "email", null, "camp-1", at);

    private Task UpsertAsync(string tenant, Guid contact, string attributes, DateTimeOffset? at = null) =>
        fx.PublishAsync(new ContactUpserted(tenant, contact, "ext-" + contact.ToString("N")[..8], null, null, null, null, [], attributes, false,
            at ?? fx.Clock.GetUtcNow()));

    private Task PublishEventsAsync(string tenant, params RecordedEngagement[] events) => fx.PublishAsync(new EngagementRecorded(tenant, events));

    private Task WaitScoreAsync(string tenant, Guid contact, double min, double max) =>
        fx.WaitUntilAsync("SELECT count(*) FROM lead_scores WHERE tenant_id = @tenant AND contact_id = @contact AND score BETWEEN @min - 1e-9 AND @max + 1e-9",
            new { tenant, contact, min, max }, 1);

    private Task WaitUntilComputedAfterAsync(string tenant, Guid contact, DateTimeOffset version) =>
        fx.WaitUntilAsync("""
            SELECT count(*) FROM lead_scores l JOIN contacts c USING (tenant_id, contact_id)
            WHERE l.tenant_id = @tenant AND l.contact_id = @contact AND c.version_at >= @version
              AND NOT EXISTS (SELECT 1 FROM dirty_contacts d WHERE d.tenant_id = @tenant AND d.contact_id = @contact)
            """, new { tenant, contact, version }, 1);

    private Task<double> ScoreAsync(string tenant, Guid contact) =>
        fx.QueryScalarAsync<double>("SELECT score FROM lead_scores WHERE tenant_id = @tenant AND contact_id = @contact", new { tenant, contact });

    internal static async Task<Google.Rpc.Status?> FailsWith(StatusCode code, Func<Task> call)
    {
        var ex = await Assert.ThrowsAsync<RpcException>(call);
        Assert.Equal(code, ex.StatusCode);
        return ex.GetRpcStatus();
    }

    internal static IReadOnlyList<string> ViolatedFields(Google.Rpc.Status? status) =>
        status?.GetDetail<BadRequest>()?.FieldViolations.Select(v => v.Field).ToList() ?? [];
}
