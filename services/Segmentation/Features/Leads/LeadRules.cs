using System.Globalization;
using System.Text.Json.Nodes;
using Crm.BuildingBlocks.Errors;
using Crm.Segmentation.V1;
using Google.Protobuf;

namespace Crm.Segmentation.Features.Leads;

/// <summary>A rule as stored: its proto JSON, and the columns the scoring SQL joins on.</summary>
public sealed record LeadRuleRow(
    string RuleId, int Position, string Definition, string Kind, string? EventType, string? EventName, string Match,
    double Points, double MaxPointsPerDay);

/// <summary>Validates a tenant's lead scoring rules, and turns them into rows and back.</summary>
public static class LeadRules
{
    public const int MaxRules = 200;
    public const double MaxPoints = 1_000_000;
    public const double MaxHalfLifeDays = 3650;

    /// <summary>Every violation, named by its path in the request (<c>rules.rules[1].points</c>).</summary>
    public static void Validate(LeadScoringRules? rules)
    {
        var v = new Validation();
        if (rules is null)
        {
            v.Add("rules", "is required").ThrowIfInvalid();
            return;
        }
        if (!double.IsFinite(rules.MqlThreshold) || rules.MqlThreshold <= 0 || rules.MqlThreshold > MaxPoints)
            v.Add("rules.mql_threshold", $"must be greater than 0 and at most {MaxPoints:0}");
        if (!double.IsFinite(rules.HalfLifeDays) || rules.HalfLifeDays is < 0 or > MaxHalfLifeDays)
            v.Add("rules.half_life_days", $"must be 0 (no decay) to {MaxHalfLifeDays:0} days");
        if (rules.Rules.Count > MaxRules) v.Add("rules.rules", $"must have at most {MaxRules} rules");

        var ids = new Dictionary<string, int>(StringComparer.Ordinal);
        for (var i = 0; i < rules.Rules.Count; i++)
        {
            var rule = rules.Rules[i];
            var path = $"rules.rules[{i}]";
            if (rule.RuleId.Length > 0)
            {
                if (rule.RuleId.Length > 64 || !rule.RuleId.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.'))
                    v.Add(path + ".rule_id", "must be 1 to 64 letters, digits, '-', '_' or '.'");
                else if (ids.TryGetValue(rule.RuleId, out var first))
                    v.Add(path + ".rule_id", $"'{rule.RuleId}' is already the id of rules.rules[{first}]");
                else ids[rule.RuleId] = i;
            }
            if (!double.IsFinite(rule.Points) || rule.Points == 0 || Math.Abs(rule.Points) > MaxPoints)
                v.Add(path + ".points", $"must be non-zero, between -{MaxPoints:0} and {MaxPoints:0}");
            if (!double.IsFinite(rule.MaxPointsPerDay) || rule.MaxPointsPerDay < 0 || rule.MaxPointsPerDay > MaxPoints)
                v.Add(path + ".max_points_per_day", $"must be 0 (no cap) to {MaxPoints:0}");

            switch (rule.TriggerCase)
            {
                case LeadScoringRule.TriggerOneofCase.None:
                    v.Add(path, "needs a trigger: engagement, custom_event, per_order or attribute");
                    break;
                case LeadScoringRule.TriggerOneofCase.Engagement when EngagementType(rule.Engagement) is null:
                    v.Add(path + ".engagement", "must be DELIVERED, OPENED, CLICKED or CONVERTED (custom events are custom_event)");
                    break;
                case LeadScoringRule.TriggerOneofCase.CustomEvent:
                    ValidateCustomEvent(v, path + ".custom_event", rule.CustomEvent);
                    break;
                case LeadScoringRule.TriggerOneofCase.PerOrder when !rule.PerOrder:
                    v.Add(path + ".per_order", "must be true");
                    break;
                case LeadScoringRule.TriggerOneofCase.Attribute:
                    if (!IsName(rule.Attribute.Attribute)) v.Add(path + ".attribute.attribute", "is required (1 to 200 characters)");
                    if (rule.Attribute.Equals_ is null || rule.Attribute.Equals_.KindCase == Value.KindOneofCase.None)
                        v.Add(path + ".attribute.equals", "is required");
                    if (rule.MaxPointsPerDay != 0)
                        v.Add(path + ".max_points_per_day", "does not apply to an attribute rule (its points count once)");
                    break;
            }
        }
        v.ThrowIfInvalid();
    }

    private static void ValidateCustomEvent(Validation v, string path, CustomEventTrigger trigger)
    {
        if (!IsName(trigger.Name)) v.Add(path + ".name", "is required (1 to 200 characters)");
        var names = new HashSet<string>(StringComparer.Ordinal);
        for (var k = 0; k < trigger.Properties.Count; k++)
        {
            var p = trigger.Properties[k];
            var at = $"{path}.properties[{k}]";
            if (!IsName(p.Name)) v.Add(at + ".name", "is required (1 to 200 characters)");
            else if (!names.Add(p.Name)) v.Add(at + ".name", $"'{p.Name}' is matched twice");
            if (p.Equals_ is null || p.Equals_.KindCase == Value.KindOneofCase.None) v.Add(at + ".equals", "is required");
            else if (p.Equals_.KindCase == Value.KindOneofCase.DateValue)
                v.Add(at + ".equals", "event properties are JSON: match a date as the string the event carries");
        }
    }

    private static bool IsName(string s) => s.Length is > 0 and <= 200;

    /// <summary>The engagement.type a rule counts, or null for kinds a lead rule cannot count.</summary>
    public static string? EngagementType(EngagementKind kind) => kind switch
    {
        EngagementKind.Delivered => "delivered",
        EngagementKind.Opened => "opened",
        EngagementKind.Clicked => "clicked",
        EngagementKind.Converted => "converted",
        _ => null,
    };

    /// <summary>Rows for valid rules; a rule without an id gets <c>rule-N</c> (its position, or the next free number).</summary>
    public static IReadOnlyList<LeadRuleRow> ToRows(LeadScoringRules rules)
    {
        var taken = rules.Rules.Select(r => r.RuleId).Where(id => id.Length > 0).ToHashSet(StringComparer.Ordinal);
        var rows = new List<LeadRuleRow>(rules.Rules.Count);
        var next = 1;
        for (var i = 0; i < rules.Rules.Count; i++)
        {
            var rule = rules.Rules[i].Clone();
            if (rule.RuleId.Length == 0)
            {
                next = Math.Max(next, i + 1);
                while (taken.Contains($"rule-{next}")) next++;
                rule.RuleId = $"rule-{next}";
                taken.Add(rule.RuleId);
            }
            var definition = JsonFormatter.Default.Format(rule);
            rows.Add(rule.TriggerCase switch
            {
                LeadScoringRule.TriggerOneofCase.Engagement => new LeadRuleRow(rule.RuleId, i, definition, "engagement",
                    EngagementType(rule.Engagement), null, "{}", rule.Points, rule.MaxPointsPerDay),
                LeadScoringRule.TriggerOneofCase.CustomEvent => new LeadRuleRow(rule.RuleId, i, definition, "custom_event", "custom",
                    rule.CustomEvent.Name, Properties(rule.CustomEvent.Properties.Select(p => (p.Name, p.Equals_))), rule.Points, rule.MaxPointsPerDay),
                LeadScoringRule.TriggerOneofCase.PerOrder => new LeadRuleRow(rule.RuleId, i, definition, "order", null, null, "{}",
                    rule.Points, rule.MaxPointsPerDay),
                _ => new LeadRuleRow(rule.RuleId, i, definition, "attribute", null, null,
                    Properties([(rule.Attribute.Attribute, rule.Attribute.Equals_)]), rule.Points, 0),
            });
        }
        return rows;
    }

    public static LeadScoringRule Parse(string definition) => JsonParser.Default.Parse<LeadScoringRule>(definition);

    /// <summary>
    /// The JSON object a matching row contains (<c>@&gt;</c>): values as Contacts stores them — strings, numbers
    /// and booleans as themselves, dates as <c>{"$date": "ISO 8601"}</c> (attributes only).
    /// </summary>
    private static string Properties(IEnumerable<(string Name, Value Value)> properties)
    {
        var o = new JsonObject();
        foreach (var (name, value) in properties) o[name] = Json(value);
        return o.ToJsonString();
    }

    private static JsonNode? Json(Value value) => value.KindCase switch
    {
        Value.KindOneofCase.StringValue => JsonValue.Create(value.StringValue),
        Value.KindOneofCase.NumberValue => JsonValue.Create(value.NumberValue),
        Value.KindOneofCase.BoolValue => JsonValue.Create(value.BoolValue),
        Value.KindOneofCase.DateValue => new JsonObject { ["$date"] = value.DateValue.ToDateTime().ToString("O", CultureInfo.InvariantCulture) },
        _ => null,
    };

    /// <summary>What a rule awards points for, in words (the first half of an explained item's reason).</summary>
    public static string Describe(LeadScoringRule rule) => rule.TriggerCase switch
    {
        LeadScoringRule.TriggerOneofCase.Engagement => $"{EngagementType(rule.Engagement)} a message",
        LeadScoringRule.TriggerOneofCase.CustomEvent => $"custom event \"{rule.CustomEvent.Name}\"" + (rule.CustomEvent.Properties.Count == 0 ? ""
            : " with " + string.Join(", ", rule.CustomEvent.Properties.Select(p => $"{p.Name} = {Words(p.Equals_)}"))),
        LeadScoringRule.TriggerOneofCase.PerOrder => "a completed order",
        LeadScoringRule.TriggerOneofCase.Attribute => $"attribute {rule.Attribute.Attribute} = {Words(rule.Attribute.Equals_)}",
        _ => "?",
    };

    private static string Words(Value value) => Json(value)?.ToJsonString() ?? "null";
}
