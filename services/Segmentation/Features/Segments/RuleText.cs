using System.Globalization;
using Crm.Segmentation.V1;

namespace Crm.Segmentation.Features.Segments;

/// <summary>A rule in a few words, for "why is this contact in the segment" (ListContactSegments).</summary>
public static class RuleText
{
    public const int MaxLength = 300;

    public static string Describe(Rule rule)
    {
        var text = Node(rule, top: true);
        return text.Length <= MaxLength ? text : text[..(MaxLength - 1)] + "…";
    }

    private static string Node(Rule r, bool top = false)
    {
        if (r.All.Count > 0) return Group(r.All, " and ", top);
        if (r.Any.Count > 0) return Group(r.Any, " or ", top);
        if (r.Not is not null) return "not " + Node(r.Not);
        if (r.Profile is { } p) return Profile(p);
        if (r.Reachability is { } re) return Reachability(re);
        if (r.Purchases is { } pu) return Purchases(pu);
        if (r.Engagement is { } e) return Engagement(e);
        if (r.Response is { } rs)
            return $"received {(rs.CampaignId.Length > 0 ? "campaign " + rs.CampaignId : "a message")}{Window(rs.Window)} and "
                   + $"{(rs.Responded ? "" : "did not ")}{Word(rs.Response)} within {rs.WithinDays} days";
        if (r.Rfm is { } rfm)
            return "RFM " + string.Join(", ", new[]
            {
                rfm.Segments.Count > 0 ? "segment " + string.Join(" / ", rfm.Segments) : null,
                rfm.R is null ? null : "R " + Range(rfm.R), rfm.F is null ? null : "F " + Range(rfm.F), rfm.M is null ? null : "M " + Range(rfm.M),
            }.Where(x => x is not null));
        if (r.LeadScore is { } l)
            return "lead score" + (l.Score is null ? "" : " " + Range(l.Score)) + (l.HasQualified ? l.Qualified ? ", qualified" : ", not qualified" : "");
        if (r.Tier is { } t) return "tier " + string.Join(" / ", t.Tiers);
        if (r.Segment is { } s) return "member of segment " + s.SegmentId;
        return "?";
    }

    private static string Group(IList<Rule> children, string op, bool top)
    {
        var inner = string.Join(op, children.Select(c => Node(c)));
        return top || children.Count == 1 ? inner : "(" + inner + ")";
    }

    private static string Profile(ProfileCondition p)
    {
        var what = p.Field switch
        {
            ProfileField.Attribute => p.Attribute,
            ProfileField.Tags => "tags",
            ProfileField.Locale => "locale",
            ProfileField.TimeZone => "time zone",
            ProfileField.CreatedAt => "created",
            _ => "external id",
        };
        var values = string.Join(", ", p.Values.Select(Value));
        return p.Op switch
        {
            Operator.Equals => p.Field == ProfileField.Tags ? $"tagged {values}" : $"{what} = {values}",
            Operator.NotEquals => p.Field == ProfileField.Tags ? $"not tagged {values}" : $"{what} ≠ {values}",
            Operator.In => $"{what} in [{values}]",
            Operator.Contains => $"{what} contains {values}",
            Operator.Exists => $"has {what}",
            Operator.NotExists => $"no {what}",
            Operator.Between => $"{what} {(p.Min is null ? "" : "≥ " + Value(p.Min))}{(p.Min is not null && p.Max is not null ? " and " : "")}{(p.Max is null ? "" : "≤ " + Value(p.Max))}",
            Operator.WithinLastDays => $"{what} within the last {p.Days} days",
            _ => $"{what} more than {p.Days} days ago",
        };
    }

    private static string Reachability(ReachabilityCondition r)
    {
        var channel = RuleCompiler.ChannelWord(r.Channel);
        var purpose = RuleCompiler.PurposeWord(r.Purpose).Replace('_', ' ');
        return r.State switch
        {
            V1.Reachability.OptedIn => $"opted in to {channel} {purpose}",
            V1.Reachability.OptedOut => $"opted out of {channel} {purpose}",
            V1.Reachability.Unreachable => $"{channel} unreachable",
            V1.Reachability.HasAddress => $"has a {channel} address",
            _ => $"reachable on {channel} for {purpose}",
        };
    }

    private static string Purchases(PurchaseCondition p)
    {
        var items = p.Skus.Count + p.Categories.Count == 0 ? "" : " of " + string.Join(" / ", p.Skus.Concat(p.Categories));
        var window = Window(p.Window);
        return p.Measure switch
        {
            PurchaseMeasure.Count => $"orders{items} {Range(p.Range, "≥ 1")}{window}",
            PurchaseMeasure.Total => $"spent{items} {Range(p.Range)}{window}",
            PurchaseMeasure.AverageOrderValue => $"average order{items} {Range(p.Range)}{window}",
            PurchaseMeasure.DaysSinceFirst => $"days since first order{items} {Range(p.Range)}",
            PurchaseMeasure.DaysSinceLast => $"days since last order{items} {Range(p.Range)}",
            PurchaseMeasure.Bought => $"bought{items}{window}",
            PurchaseMeasure.NeverBought => $"never bought{items}{window}",
            PurchaseMeasure.Refunds => $"refunds {Range(p.Range, "≥ 1")}{window}",
            _ => $"cancellations {Range(p.Range, "≥ 1")}{window}",
        };
    }

    private static string Engagement(EngagementCondition e)
    {
        var what = e.Kind == EngagementKind.Custom ? $"did {e.EventName}" : Word(e.Kind);
        if (e.CampaignId.Length > 0) what += " campaign " + e.CampaignId;
        if (e.Channel != Channel.Unspecified) what += " on " + RuleCompiler.ChannelWord(e.Channel);
        var window = Window(e.Window);
        if (e.Count is { HasMax: true, Max: < 1 }) return $"never {what}{window}";
        return $"{what} {Range(e.Count, "≥ 1")} times{window}";
    }

    private static string Word(EngagementKind kind) => RuleCompiler.EngagementWord(kind);

    private static string Window(TimeWindow? w) => w switch
    {
        null => "",
        { LastDays: > 0 } => $" in the last {w.LastDays} days",
        _ => $" between {w.From?.ToDateTime().ToString("yyyy-MM-dd", CultureInfo.InvariantCulture) ?? "…"} and {w.To?.ToDateTime().ToString("yyyy-MM-dd", CultureInfo.InvariantCulture) ?? "…"}",
    };

    private static string Range(NumberRange? r, string otherwise = "")
    {
        if (r is null || (!r.HasMin && !r.HasMax)) return otherwise;
        if (r.HasMin && r.HasMax) return r.Min == r.Max ? "= " + N(r.Min) : $"{N(r.Min)}–{N(r.Max)}";
        return r.HasMin ? "≥ " + N(r.Min) : "≤ " + N(r.Max);
    }

    private static string N(double x) => x.ToString("0.##", CultureInfo.InvariantCulture);

    private static string Value(Value v) => v.KindCase switch
    {
        V1.Value.KindOneofCase.StringValue => v.StringValue,
        V1.Value.KindOneofCase.NumberValue => N(v.NumberValue),
        V1.Value.KindOneofCase.BoolValue => v.BoolValue ? "true" : "false",
        V1.Value.KindOneofCase.DateValue => v.DateValue.ToDateTime().ToString("yyyy-MM-dd", CultureInfo.InvariantCulture),
        _ => "",
    };
}
