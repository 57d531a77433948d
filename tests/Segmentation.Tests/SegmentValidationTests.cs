using Crm.Segmentation.Tests.Infrastructure;
using Crm.Segmentation.V1;
using Grpc.Core;

namespace Crm.Segmentation.Tests;

/// <summary>Bad rules are refused with INVALID_ARGUMENT, a field violation naming each offending node's path.</summary>
[Collection(SegmentationCollection.Name)]
public sealed class SegmentValidationTests(SegmentationFixture fx)
{
    private const string BadRule = """
        {"all": [
          {"profile": {"field": "PROFILE_FIELD_TAGS", "op": "OPERATOR_EXISTS"}},
          {},
          {"purchases": {"measure": "PURCHASE_MEASURE_COUNT", "window": {"lastDays": 30, "from": "2024-01-01T00:00:00Z"}}},
          {"any": [{"tier": {"tiers": ["gold"]}, "segment": {"segmentId": "x"}}]},
          {"engagement": {"kind": "ENGAGEMENT_KIND_CUSTOM"}},
          {"profile": {"field": "PROFILE_FIELD_ATTRIBUTE", "attribute": "age", "op": "OPERATOR_IN", "values": [{"numberValue": 1}, {"stringValue": "x"}]}},
          {"not": {"purchases": {"measure": "PURCHASE_MEASURE_TOTAL", "window": {"lastDays": -3}}}},
          {"response": {"response": "ENGAGEMENT_KIND_RECEIVED", "withinDays": 3}},
          {"reachability": {"state": "REACHABILITY_OPTED_IN"}},
          {"purchases": {"measure": "PURCHASE_MEASURE_COUNT", "range": {"min": 3, "max": 1}}}
        ]}
        """;

    private static readonly string[] BadRulePaths =
    [
        "rule.all[1]",
        "rule.all[2].purchases.window",
        "rule.all[3].any[0]",
        "rule.all[4].engagement.event_name",
        "rule.all[5].profile.values[1]",
        "rule.all[6].not.purchases.window.last_days",
        "rule.all[7].response.response",
        "rule.all[8].reachability.channel",
        "rule.all[9].purchases.range.max",
    ];

    [Fact]
    public async Task Should_name_the_path_of_every_offending_node_when_creating()
    {
        var tenant = SegmentationFixture.NewTenant();
        var status = await Segs.FailsWith(StatusCode.InvalidArgument, async () => await fx.Client.CreateSegmentAsync(
            new CreateSegmentRequest { Segment = new Segment { Name = " ", Rule = Segs.Rule(BadRule) } }, fx.As(tenant)));
        Assert.Equal(BadRulePaths.Prepend("name"), Segs.ViolatedFields(status));
        Assert.Empty((await fx.Client.ListSegmentsAsync(new ListSegmentsRequest(), fx.As(tenant))).Segments);
    }

    [Fact]
    public async Task Should_name_the_same_paths_when_previewing_and_refuse_a_missing_rule_and_limits()
    {
        var tenant = SegmentationFixture.NewTenant();
        var status = await Segs.FailsWith(StatusCode.InvalidArgument, async () => await fx.Client.PreviewSegmentAsync(
            new PreviewSegmentRequest { Rule = Segs.Rule(BadRule), SampleSize = 101 }, fx.As(tenant)));
        Assert.Equal(BadRulePaths.Prepend("sample_size"), Segs.ViolatedFields(status));

        status = await Segs.FailsWith(StatusCode.InvalidArgument, async () => await fx.Client.CreateSegmentAsync(
            new CreateSegmentRequest { Segment = new Segment { Name = "no rule" } }, fx.As(tenant)));
        Assert.Equal(["rule"], Segs.ViolatedFields(status));

        // Thirteen levels of nesting: the thirteenth is named.
        var deep = new Rule { Profile = new ProfileCondition { Field = ProfileField.Tags, Op = Operator.Exists } };
        for (var i = 0; i < 12; i++) deep = new Rule { Not = deep };
        status = await Segs.FailsWith(StatusCode.InvalidArgument, async () => await fx.Client.PreviewSegmentAsync(new PreviewSegmentRequest { Rule = deep }, fx.As(tenant)));
        Assert.Equal(["rule" + string.Concat(Enumerable.Repeat(".not", 12))], Segs.ViolatedFields(status));

        var wide = new Rule();
        for (var i = 0; i < 250; i++) wide.Any.Add(new Rule { Profile = new ProfileCondition { Field = ProfileField.Tags, Op = Operator.Exists } });
        status = await Segs.FailsWith(StatusCode.InvalidArgument, async () => await fx.Client.PreviewSegmentAsync(new PreviewSegmentRequest { Rule = wide }, fx.As(tenant)));
        Assert.Equal(["rule.any[199]"], Segs.ViolatedFields(status));

        // A reference to a segment the workspace does not have: NOT_FOUND, naming the reference.
        var missing = await Segs.FailsWith(StatusCode.NotFound, async () => await fx.Client.PreviewSegmentAsync(
            new PreviewSegmentRequest { Rule = Segs.Rule($$$"""{"any": [{"profile": {"field": "PROFILE_FIELD_TAGS", "op": "OPERATOR_EXISTS"}}, {"segment": {"segmentId": "{{{Guid.NewGuid()}}}"}}]}""") },
            fx.As(tenant)));
        Assert.StartsWith("rule.any[1].segment.segment_id", missing!.Message);
    }
}
