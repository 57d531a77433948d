using Crm.Contracts.Contacts;
using Crm.Contracts.Delivery;
using Crm.Segmentation.Tests.Infrastructure;
using Crm.Segmentation.V1;
using Grpc.Core;

namespace Crm.Segmentation.Tests;

/// <summary>Each condition kind, evaluated by PreviewSegment over projections built from the events Contacts and Delivery publish.</summary>
[Collection(SegmentationCollection.Name)]
public sealed class SegmentConditionTests(SegmentationFixture fx)
{
    [Fact]
    public async Task Should_match_profile_attributes_by_type_tags_locale_time_zone_external_id_and_created_date()
    {
        var tenant = SegmentationFixture.NewTenant();
        var now = fx.Clock.GetUtcNow();
        var (a, b, c) = (Guid.NewGuid(), Guid.NewGuid(), Guid.NewGuid());
        string Date(DateTimeOffset d) => $$"""{"$date": "{{d.UtcDateTime:O}}"}""";
        await fx.PublishAsync(new ContactUpserted(tenant, a, "a-1", "a@example.kr", null, "ko-KR", "Asia/Seoul", ["vip", "kr"],
            $$"""{"plan": "gold", "age": 30, "newsletter": true, "birthday": {{Date(now.AddDays(-10))}}}""", false, now, CreatedAt: now.AddDays(-400)));
        await fx.PublishAsync(new ContactUpserted(tenant, b, "b-1", null, null, "en-GB", "Europe/London", ["uk"],
            $$"""{"plan": "silver", "age": 45, "newsletter": false, "birthday": {{Date(now.AddDays(-100))}}}""", false, now, CreatedAt: now.AddDays(-5)));
        await fx.PublishAsync(new ContactUpserted(tenant, c, "c-1", null, null, null, null, [], """{"age": "30"}""", false, now, CreatedAt: now));
        await fx.WaitUntilAsync("SELECT count(*) FROM contacts WHERE tenant_id = @tenant", new { tenant }, 3);

        async Task Expect(string rule, params Guid[] expected) => Assert.Equal(Sorted(expected), await Segs.MatchAsync(fx, tenant, rule));
        await Expect("""{"profile": {"field": "PROFILE_FIELD_ATTRIBUTE", "attribute": "plan", "op": "OPERATOR_EQUALS", "values": [{"stringValue": "gold"}]}}""", a);
        await Expect("""{"profile": {"field": "PROFILE_FIELD_ATTRIBUTE", "attribute": "plan", "op": "OPERATOR_NOT_EQUALS", "values": [{"stringValue": "gold"}]}}""", b, c);
        await Expect("""{"profile": {"field": "PROFILE_FIELD_ATTRIBUTE", "attribute": "plan", "op": "OPERATOR_IN", "values": [{"stringValue": "gold"}, {"stringValue": "silver"}]}}""", a, b);
        await Expect("""{"profile": {"field": "PROFILE_FIELD_ATTRIBUTE", "attribute": "plan", "op": "OPERATOR_CONTAINS", "values": [{"stringValue": "OLD"}]}}""", a);
        await Expect("""{"profile": {"field": "PROFILE_FIELD_ATTRIBUTE", "attribute": "plan", "op": "OPERATOR_EXISTS"}}""", a, b);
        await Expect("""{"profile": {"field": "PROFILE_FIELD_ATTRIBUTE", "attribute": "plan", "op": "OPERATOR_NOT_EXISTS"}}""", c);
        // Typed: the number 30 is not the string "30".
        await Expect("""{"profile": {"field": "PROFILE_FIELD_ATTRIBUTE", "attribute": "age", "op": "OPERATOR_EQUALS", "values": [{"numberValue": 30}]}}""", a);
        await Expect("""{"profile": {"field": "PROFILE_FIELD_ATTRIBUTE", "attribute": "age", "op": "OPERATOR_EQUALS", "values": [{"stringValue": "30"}]}}""", c);
        await Expect("""{"profile": {"field": "PROFILE_FIELD_ATTRIBUTE", "attribute": "age", "op": "OPERATOR_BETWEEN", "min": {"numberValue": 40}, "max": {"numberValue": 50}}}""", b);
        await Expect("""{"profile": {"field": "PROFILE_FIELD_ATTRIBUTE", "attribute": "newsletter", "op": "OPERATOR_EQUALS", "values": [{"boolValue": true}]}}""", a);
        await Expect("""{"profile": {"field": "PROFILE_FIELD_ATTRIBUTE", "attribute": "birthday", "op": "OPERATOR_WITHIN_LAST_DAYS", "days": 30}}""", a);
        await Expect("""{"profile": {"field": "PROFILE_FIELD_ATTRIBUTE", "attribute": "birthday", "op": "OPERATOR_MORE_THAN_DAYS_AGO", "days": 30}}""", b);
        await Expect("""{"profile": {"field": "PROFILE_FIELD_ATTRIBUTE", "attribute": "birthday", "op": "OPERATOR_BETWEEN", "min": {"dateValue": "@FROM@"}, "max": {"dateValue": "@UNTIL@"}}}"""
            .Replace("@FROM@", $"{now.AddDays(-200).UtcDateTime:yyyy-MM-ddTHH:mm:ssZ}").Replace("@UNTIL@", $"{now.AddDays(-50).UtcDateTime:yyyy-MM-ddTHH:mm:ssZ}"), b);
        await Expect("""{"profile": {"field": "PROFILE_FIELD_TAGS", "op": "OPERATOR_EQUALS", "values": [{"stringValue": "vip"}]}}""", a);
        await Expect("""{"profile": {"field": "PROFILE_FIELD_TAGS", "op": "OPERATOR_NOT_EQUALS", "values": [{"stringValue": "vip"}]}}""", b, c);
        await Expect("""{"profile": {"field": "PROFILE_FIELD_TAGS", "op": "OPERATOR_IN", "values": [{"stringValue": "uk"}, {"stringValue": "kr"}]}}""", a, b);
        await Expect("""{"profile": {"field": "PROFILE_FIELD_TAGS", "op": "OPERATOR_NOT_EXISTS"}}""", c);
        await Expect("""{"profile": {"field": "PROFILE_FIELD_LOCALE", "op": "OPERATOR_EQUALS", "values": [{"stringValue": "ko-KR"}]}}""", a);
        await Expect("""{"profile": {"field": "PROFILE_FIELD_LOCALE", "op": "OPERATOR_NOT_EXISTS"}}""", c);
        await Expect("""{"profile": {"field": "PROFILE_FIELD_TIME_ZONE", "op": "OPERATOR_CONTAINS", "values": [{"stringValue": "london"}]}}""", b);
        await Expect("""{"profile": {"field": "PROFILE_FIELD_EXTERNAL_ID", "op": "OPERATOR_IN", "values": [{"stringValue": "a-1"}, {"stringValue": "c-1"}]}}""", a, c);
        await Expect("""{"profile": {"field": "PROFILE_FIELD_CREATED_AT", "op": "OPERATOR_WITHIN_LAST_DAYS", "days": 30}}""", b, c);
        await Expect("""{"profile": {"field": "PROFILE_FIELD_CREATED_AT", "op": "OPERATOR_MORE_THAN_DAYS_AGO", "days": 30}}""", a);
        // Nested: tagged vip or uk, but not silver and not without a locale.
        await Expect("""
            {"all": [
              {"any": [{"profile": {"field": "PROFILE_FIELD_TAGS", "op": "OPERATOR_EQUALS", "values": [{"stringValue": "vip"}]}},
                       {"profile": {"field": "PROFILE_FIELD_TAGS", "op": "OPERATOR_EQUALS", "values": [{"stringValue": "uk"}]}}]},
              {"not": {"any": [{"profile": {"field": "PROFILE_FIELD_ATTRIBUTE", "attribute": "plan", "op": "OPERATOR_EQUALS", "values": [{"stringValue": "silver"}]}},
                               {"profile": {"field": "PROFILE_FIELD_LOCALE", "op": "OPERATOR_NOT_EXISTS"}}]}}
            ]}
            """, a);
        await Expect("""{"not": {"not": {"profile": {"field": "PROFILE_FIELD_TAGS", "op": "OPERATOR_EXISTS"}}}}""", a, b);
    }

    [Fact]
    public async Task Should_match_consent_unreachable_addresses_and_marketing_reachability_per_channel()
    {
        var tenant = SegmentationFixture.NewTenant();
        var now = fx.Clock.GetUtcNow();
        var (a, b, c, d, e) = (Guid.NewGuid(), Guid.NewGuid(), Guid.NewGuid(), Guid.NewGuid(), Guid.NewGuid());
        await fx.PublishAsync(new ContactUpserted(tenant, a, "a", "a@example.kr", null, null, null, [], "{}", false, now));
        await fx.PublishAsync(new ContactUpserted(tenant, b, "b", "b@example.kr", null, null, null, [], "{}", false, now));
        await fx.PublishAsync(new ContactUpserted(tenant, c, "c", null, "+821012345678", null, null, [], "{}", false, now));
        await fx.PublishAsync(new ContactUpserted(tenant, d, "d", "d@example.kr", null, null, null, [], "{}", true, now, PushTokens: 2));
        await fx.PublishAsync(new ContactUpserted(tenant, e, "e", null, "+821087654321", null, null, [], "{}", false, now));
        foreach (var x in new[] { a, b, d }) await fx.PublishAsync(new ConsentChanged(tenant, x, "email", "marketing", "opted_in", "form", now, now));
        await fx.PublishAsync(new ConsentChanged(tenant, c, "sms", "marketing", "opted_out", "stop_reply", now, null));
        await fx.PublishAsync(new ConsentChanged(tenant, e, "kakao", "marketing", "opted_in", "form", now, now));
        await fx.PublishAsync(new ChannelUnreachable(tenant, b, "email", "550 mailbox unavailable", now));
        await fx.WaitUntilAsync("SELECT count(*) FROM consents WHERE tenant_id = @tenant", new { tenant }, 5);
        await fx.WaitUntilAsync("SELECT count(*) FROM unreachable_channels WHERE tenant_id = @tenant", new { tenant }, 1);
        await fx.WaitUntilAsync("SELECT count(*) FROM contacts WHERE tenant_id = @tenant AND version_at > '-infinity'", new { tenant }, 5);

        async Task Expect(string channel, string state, string purpose, params Guid[] expected) => Assert.Equal(Sorted(expected), await Segs.MatchAsync(fx, tenant,
            $$$"""{"reachability": {"channel": "CHANNEL_{{{channel}}}", "state": "REACHABILITY_{{{state}}}", "purpose": "PURPOSE_{{{purpose}}}"}}"""));
        await Expect("EMAIL", "OPTED_IN", "MARKETING", a, b, d);
        await Expect("SMS", "OPTED_OUT", "MARKETING", c);
        await Expect("EMAIL", "UNREACHABLE", "MARKETING", b);
        await Expect("PUSH", "HAS_ADDRESS", "MARKETING", d);
        await Expect("SMS", "HAS_ADDRESS", "MARKETING", c, e);
        await Expect("EMAIL", "REACHABLE", "MARKETING", a); // b is unreachable, d suppressed
        await Expect("KAKAO", "REACHABLE", "MARKETING", e);
        await Expect("SMS", "REACHABLE", "TRANSACTIONAL", c, e); // transactional needs no opt-in, only no opt-out

        var preview = await fx.Client.PreviewSegmentAsync(new PreviewSegmentRequest
        {
            Rule = Segs.Rule("""{"reachability": {"channel": "CHANNEL_EMAIL", "state": "REACHABILITY_HAS_ADDRESS"}}"""),
            SampleSize = 2,
        }, fx.As(tenant));
        Assert.Equal(3, preview.Count);
        Assert.Equal(2, preview.Sample.Count);
        Assert.Equal(1, preview.Reach.Single(r => r.Channel == Channel.Email).Reachable);
        Assert.Equal(0, preview.Reach.Single(r => r.Channel == Channel.Sms).Reachable);
    }

    [Fact]
    public async Task Should_match_purchase_counts_totals_averages_recency_items_refunds_and_cancellations()
    {
        var tenant = SegmentationFixture.NewTenant();
        var now = fx.Clock.GetUtcNow();
        var (a, b, c, d, e) = (Guid.NewGuid(), Guid.NewGuid(), Guid.NewGuid(), Guid.NewGuid(), Guid.NewGuid());
        foreach (var (x, created) in new[] { (a, -400), (b, -400), (c, -400), (d, -2), (e, -400) })
            await fx.PublishAsync(new ContactUpserted(tenant, x, x.ToString("N")[..8], null, null, null, null, [], "{}", false, now, CreatedAt: now.AddDays(created)));
        await fx.PublishAsync(new TransactionsRecorded(tenant, [
            new RecordedOrder(a, "a-1", now.AddDays(-10), "KRW", 100m, "completed", ["sku-1", "sku-2"], ["shoes", "hats"],
                [new RecordedLine("sku-1", "shoes", 1, 60m), new RecordedLine("sku-2", "hats", 1, 40m)]),
            new RecordedOrder(a, "a-2", now.AddDays(-40), "KRW", 300m, "completed", ["sku-3"], ["shoes"], [new RecordedLine("sku-3", "shoes", 3, 300m)]),
            new RecordedOrder(a, "a-3", now.AddDays(-5), "KRW", 50m, "refunded", ["sku-1"], ["shoes"], [new RecordedLine("sku-1", "shoes", 1, 50m)]),
            new RecordedOrder(b, "b-1", now.AddDays(-200), "KRW", 1000m, "completed", ["sku-9"], ["bags"], [new RecordedLine("sku-9", "bags", 1, 1000m)]),
            new RecordedOrder(c, "c-1", now.AddDays(-2), "KRW", 70m, "cancelled", ["sku-1"], ["shoes"], [new RecordedLine("sku-1", "shoes", 1, 70m)]),
        ]));
        await fx.WaitUntilAsync("SELECT count(*) FROM orders WHERE tenant_id = @tenant", new { tenant }, 5);
        await fx.WaitUntilAsync("SELECT count(*) FROM contacts WHERE tenant_id = @tenant AND version_at > '-infinity'", new { tenant }, 5);

        async Task Expect(string purchases, params Guid[] expected) => Assert.Equal(Sorted(expected), await Segs.MatchAsync(fx, tenant, "{\"purchases\": {" + purchases + "}}"));
        await Expect("""  "measure": "PURCHASE_MEASURE_COUNT", "window": {"lastDays": 30} """, a);
        await Expect("""  "measure": "PURCHASE_MEASURE_COUNT", "window": {"lastDays": 60}, "range": {"min": 2} """, a);
        await Expect("""  "measure": "PURCHASE_MEASURE_COUNT", "range": {"min": 1, "max": 1} """, b);
        // Did not buy in the last 30 days: a contact created two days ago matches by default, not with EXCLUDE.
        await Expect("""  "measure": "PURCHASE_MEASURE_COUNT", "window": {"lastDays": 30}, "range": {"max": 0} """, b, c, d, e);
        await Expect("""  "measure": "PURCHASE_MEASURE_COUNT", "window": {"lastDays": 30}, "range": {"max": 0}, "newContacts": "NEW_CONTACTS_EXCLUDE" """, b, c, e);
        await Expect($$"""  "measure": "PURCHASE_MEASURE_COUNT", "window": {"from": "{{now.AddDays(-50).UtcDateTime:yyyy-MM-ddTHH:mm:ssZ}}", "to": "{{now.AddDays(-20).UtcDateTime:yyyy-MM-ddTHH:mm:ssZ}}"} """, a);
        await Expect("""  "measure": "PURCHASE_MEASURE_TOTAL", "range": {"min": 400} """, a, b);
        await Expect("""  "measure": "PURCHASE_MEASURE_TOTAL", "range": {"max": 100} """, c, d, e); // no completed orders: a total of zero
        await Expect("""  "measure": "PURCHASE_MEASURE_TOTAL", "categories": ["shoes"], "range": {"min": 360, "max": 360} """, a); // lines: 60 + 300
        await Expect("""  "measure": "PURCHASE_MEASURE_TOTAL", "skus": ["sku-2"], "range": {"min": 41} """);
        await Expect("""  "measure": "PURCHASE_MEASURE_AVERAGE_ORDER_VALUE", "range": {"min": 150} """, a, b);
        await Expect("""  "measure": "PURCHASE_MEASURE_AVERAGE_ORDER_VALUE", "range": {"max": 250} """, a);
        await Expect("""  "measure": "PURCHASE_MEASURE_DAYS_SINCE_LAST", "range": {"min": 30} """, b);
        await Expect("""  "measure": "PURCHASE_MEASURE_DAYS_SINCE_LAST", "range": {"max": 15} """, a);
        await Expect("""  "measure": "PURCHASE_MEASURE_DAYS_SINCE_FIRST", "range": {"min": 30, "max": 100} """, a);
        await Expect("""  "measure": "PURCHASE_MEASURE_BOUGHT", "skus": ["sku-9"] """, b);
        await Expect("""  "measure": "PURCHASE_MEASURE_BOUGHT", "categories": ["shoes"], "window": {"lastDays": 30} """, a);
        await Expect("""  "measure": "PURCHASE_MEASURE_NEVER_BOUGHT", "categories": ["bags"] """, a, c, d, e);
        await Expect("""  "measure": "PURCHASE_MEASURE_REFUNDS" """, a);
        await Expect("""  "measure": "PURCHASE_MEASURE_CANCELLATIONS", "window": {"lastDays": 7} """, c);
    }

    [Fact]
    public async Task Should_match_received_opened_custom_events_by_properties_and_responders_and_non_responders()
    {
        var tenant = SegmentationFixture.NewTenant();
        var now = fx.Clock.GetUtcNow();
        var (a, b, c, d, e) = (Guid.NewGuid(), Guid.NewGuid(), Guid.NewGuid(), Guid.NewGuid(), Guid.NewGuid());
        foreach (var x in new[] { a, b, c, d, e })
            await fx.PublishAsync(new ContactUpserted(tenant, x, x.ToString("N")[..8], null, null, null, null, [], "{}", false, now, CreatedAt: now.AddDays(-100)));
        var (ma, mb, me) = (Guid.NewGuid(), Guid.NewGuid(), Guid.NewGuid());
        await fx.PublishAsync(new MessagesSent(tenant, [
            new MessageSent(tenant, ma, a, "email", "spring", "p-a", 1, now.AddDays(-3)),
            new MessageSent(tenant, mb, b, "email", "spring", "p-b", 1, now.AddDays(-10)),
            new MessageSent(tenant, me, e, "email", "spring", "p-e", 1, now.AddHours(-12)),
        ]));
        await fx.PublishAsync(new EngagementRecorded(tenant, [
            new RecordedEngagement("ev-a", a, "opened", null, "email", ma.ToString(), "spring", now.AddDays(-2)),
            new RecordedEngagement("ev-c", c, "custom", "viewed_product", null, null, null, now.AddDays(-1), """{"sku": "s1", "price": 10, "new": true}"""),
        ]));
        await fx.WaitUntilAsync("SELECT count(*) FROM messages WHERE tenant_id = @tenant", new { tenant }, 3);
        await fx.WaitUntilAsync("SELECT count(*) FROM engagement WHERE tenant_id = @tenant", new { tenant }, 2);
        await fx.WaitUntilAsync("SELECT count(*) FROM contacts WHERE tenant_id = @tenant AND version_at > '-infinity'", new { tenant }, 5);

        async Task Expect(string rule, params Guid[] expected) => Assert.Equal(Sorted(expected), await Segs.MatchAsync(fx, tenant, rule));
        await Expect("""{"engagement": {"kind": "ENGAGEMENT_KIND_RECEIVED", "campaignId": "spring", "window": {"lastDays": 30}}}""", a, b, e);
        await Expect("""{"engagement": {"kind": "ENGAGEMENT_KIND_RECEIVED", "window": {"lastDays": 5}}}""", a, e);
        await Expect("""{"engagement": {"kind": "ENGAGEMENT_KIND_RECEIVED", "channel": "CHANNEL_SMS"}}""");
        await Expect("""{"engagement": {"kind": "ENGAGEMENT_KIND_RECEIVED", "count": {"min": 2}}}""");
        await Expect("""{"engagement": {"kind": "ENGAGEMENT_KIND_OPENED", "campaignId": "spring"}}""", a);
        await Expect("""{"engagement": {"kind": "ENGAGEMENT_KIND_OPENED", "window": {"lastDays": 30}, "count": {"max": 0}}}""", b, c, d, e);
        await Expect("""{"engagement": {"kind": "ENGAGEMENT_KIND_CUSTOM", "eventName": "viewed_product", "properties": [{"name": "sku", "equals": {"stringValue": "s1"}}, {"name": "price", "equals": {"numberValue": 10}}]}}""", c);
        await Expect("""{"engagement": {"kind": "ENGAGEMENT_KIND_CUSTOM", "eventName": "viewed_product", "properties": [{"name": "sku", "equals": {"stringValue": "s2"}}]}}""");
        await Expect("""{"engagement": {"kind": "ENGAGEMENT_KIND_CUSTOM", "eventName": "viewed_product", "properties": [{"name": "new", "equals": {"boolValue": true}}]}}""", c);
        await Expect("""{"response": {"campaignId": "spring", "response": "ENGAGEMENT_KIND_OPENED", "withinDays": 3, "responded": true}}""", a);
        // b's three days have passed without an open; e received it twelve hours ago: too early to call.
        await Expect("""{"response": {"campaignId": "spring", "response": "ENGAGEMENT_KIND_OPENED", "withinDays": 3}}""", b);
        await Expect("""{"response": {"campaignId": "spring", "response": "ENGAGEMENT_KIND_CLICKED", "withinDays": 1, "window": {"lastDays": 30}}}""", a, b);
    }

    /// <summary>
    /// RFM, lead score and tier conditions read tables that their own capabilities create (migrations 0002 and 0003);
    /// on a branch without them this test has nothing to read and ends early.
    /// </summary>
    [Fact]
    public async Task Should_match_rfm_lead_score_and_tier_rows()
    {
        if (!await fx.QueryScalarAsync<bool>("SELECT to_regclass('rfm_scores') IS NOT NULL AND to_regclass('lead_scores') IS NOT NULL AND to_regclass('contact_tiers') IS NOT NULL"))
            return;
        var tenant = SegmentationFixture.NewTenant();
        var now = fx.Clock.GetUtcNow();
        var (a, b, c) = (Guid.NewGuid(), Guid.NewGuid(), Guid.NewGuid());
        foreach (var x in new[] { a, b, c })
            await fx.PublishAsync(new ContactUpserted(tenant, x, x.ToString("N")[..8], null, null, null, null, [], "{}", false, now));
        await fx.WaitUntilAsync("SELECT count(*) FROM contacts WHERE tenant_id = @tenant", new { tenant }, 3);
        await fx.QueryScalarAsync<int>("""
            INSERT INTO rfm_scores (tenant_id, contact_id, recency_days, frequency, monetary, r, f, m, segment, as_of)
            VALUES (@tenant, @a, 3, 10, 5000, 5, 5, 5, 'Champions', now()), (@tenant, @b, 300, 1, 10, 1, 1, 1, 'Lost', now());
            INSERT INTO lead_scores (tenant_id, contact_id, score, qualified, qualified_at, computed_at)
            VALUES (@tenant, @a, 80, true, now(), now()), (@tenant, @b, 20, false, NULL, now());
            INSERT INTO contact_tiers (tenant_id, contact_id, tier, value, since) VALUES (@tenant, @a, 'gold', 5000, now()), (@tenant, @b, 'bronze', 10, now());
            SELECT 1;
            """, new { tenant, a, b });

        async Task Expect(string rule, params Guid[] expected) => Assert.Equal(Sorted(expected), await Segs.MatchAsync(fx, tenant, rule));
        await Expect("""{"rfm": {"segments": ["Champions"]}}""", a);
        await Expect("""{"rfm": {"r": {"max": 2}, "f": {"min": 1}}}""", b);
        await Expect("""{"leadScore": {"score": {"min": 50}}}""", a);
        await Expect("""{"leadScore": {"qualified": false}}""", b, c); // no score yet: zero, not qualified
        await Expect("""{"leadScore": {"score": {"max": 30}}}""", b, c);
        await Expect("""{"tier": {"tiers": ["gold", "silver"]}}""", a);

        var listed = await fx.Client.ListContactSegmentsAsync(new ListContactSegmentsRequest { ContactId = a.ToString() }, fx.As(tenant));
        Assert.Equal("Champions", listed.Rfm.Segment);
        Assert.True(listed.LeadScore.Qualified);
        Assert.Equal("gold", listed.Tier.Tier);
    }

    private static List<Guid> Sorted(IEnumerable<Guid> ids) => ids.OrderBy(g => g.ToString()).ToList();
}

/// <summary>What the segment tests share: rules written as their JSON, and who a rule selects.</summary>
internal static class Segs
{
    public static Rule Rule(string json) => Crm.Segmentation.V1.Rule.Parser.ParseJson(json);

    /// <summary>The contacts PreviewSegment selects (sorted as ids' text, at most 100).</summary>
    public static async Task<List<Guid>> MatchAsync(SegmentationFixture fx, string tenant, string ruleJson)
    {
        var preview = await fx.Client.PreviewSegmentAsync(new PreviewSegmentRequest { Rule = Rule(ruleJson), SampleSize = 100 }, fx.As(tenant));
        var ids = preview.Sample.Select(s => Guid.Parse(s.ContactId)).OrderBy(g => g.ToString()).ToList();
        Assert.True(preview.Count == ids.Count, $"count {preview.Count} but {ids.Count} sampled for {ruleJson}");
        return ids;
    }

    public static async Task<Segment> CreateAsync(SegmentationFixture fx, string tenant, string name, string ruleJson) =>
        await fx.Client.CreateSegmentAsync(new CreateSegmentRequest { Segment = new Segment { Name = name, Rule = Rule(ruleJson) } }, fx.As(tenant));

    /// <summary>Every member, through ExportSegmentMembers.</summary>
    public static async Task<List<Guid>> MembersAsync(SegmentationFixture fx, string tenant, string segmentId, int pageSize = 0, string pageToken = "")
    {
        using var call = fx.Client.ExportSegmentMembers(new ExportSegmentMembersRequest { SegmentId = segmentId, PageSize = pageSize, PageToken = pageToken }, fx.As(tenant));
        var members = new List<Guid>();
        await foreach (var page in call.ResponseStream.ReadAllAsync()) members.AddRange(page.Members.Select(m => Guid.Parse(m.ContactId)));
        return members;
    }

    public static async Task<Google.Rpc.Status?> FailsWith(StatusCode code, Func<Task> call)
    {
        var ex = await Assert.ThrowsAsync<RpcException>(call);
        Assert.Equal(code, ex.StatusCode);
        return ex.GetRpcStatus();
    }

    public static IReadOnlyList<string> ViolatedFields(Google.Rpc.Status? status) =>
        status?.GetDetail<Google.Rpc.BadRequest>()?.FieldViolations.Select(v => v.Field).ToList() ?? [];
}
