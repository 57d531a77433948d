using System.Text.Json;
using Crm.BuildingBlocks.Errors;
using Crm.Segmentation.V1;
using Dapper;

namespace Crm.Segmentation.Features.Segments;

/// <summary>A rule compiled to one SQL predicate over the projections (alias <c>c</c> = contacts), with its parameters.</summary>
/// <param name="TimeRelative">Whether membership can change with the clock alone (windows relative to now, days since, responses, scores).</param>
/// <param name="Segments">The segments the rule reads, with the path of each reference.</param>
public sealed record CompiledRule(string Predicate, DynamicParameters Parameters, bool TimeRelative, IReadOnlyList<SegmentReference> Segments);

public sealed record SegmentReference(Guid SegmentId, string Path);

/// <summary>
/// Validates a rule tree and compiles it, in one walk, to ONE parameterised SQL predicate over the projections.
/// Values never enter the SQL text: every value, list, name and time is a parameter; only the shape of the
/// tree chooses the text. The predicate expects <c>@tenant</c> (and, when <c>restricted</c>, <c>@contacts</c>)
/// from its caller; every subquery filters <c>tenant_id = @tenant</c> and correlates on (or is narrowed to)
/// the contact, so it stays a single-tenant query on Citus. Times relative to "now" are computed here from
/// the evaluation time, so the planner sees plain constants.
///
/// Shapes chosen for the planner: "at least once" is <c>EXISTS</c> (a semi-join), "never" is <c>NOT EXISTS</c>
/// (an anti-join), and other counts and sums are <c>c.contact_id IN (… GROUP BY contact_id HAVING …)</c> (one
/// aggregate pass, hashed), or <c>NOT IN</c> when a contact without any row (a count or sum of zero) matches.
/// </summary>
public static class RuleCompiler
{
    public const int MaxDepth = 12;
    public const int MaxNodes = 200;
    public const int MaxListValues = 1000;
    public const int MaxDays = 36_600;
    public const int MaxNameLength = 256;

    /// <param name="path">The rule's own path in the request, e.g. "rule".</param>
    /// <param name="restricted">Only the contacts in <c>@contacts</c> are evaluated; aggregate subqueries are narrowed to them too.</param>
    /// <exception cref="InvalidArgumentException">The rule is not valid; every violation names its node's path.</exception>
    public static CompiledRule Compile(Rule? rule, DateTimeOffset now, string path = "rule", bool restricted = false)
    {
        var c = new Compilation(now, restricted);
        var sql = rule is null ? c.Fail(path, "is required") : c.Node(rule, path, 1);
        c.Errors.ThrowIfInvalid();
        return new CompiledRule(sql, c.Parameters, c.TimeRelative, c.Segments);
    }

    /// <summary>Marketing reachability on a channel as a predicate over <c>c</c>, for counts beside a rule's.</summary>
    public static string Reachable(DynamicParameters parameters, string prefix, Channel channel) =>
        new Compilation(DateTimeOffset.UnixEpoch, false, parameters, prefix).ReachableOn(channel, Purpose.Marketing);

    public static string ChannelWord(Channel channel) => channel switch
    {
        Channel.Email => "email",
        Channel.Sms => "sms",
        Channel.Push => "push",
        Channel.Kakao => "kakao",
        _ => "",
    };

    public static string PurposeWord(Purpose purpose) => purpose switch
    {
        Purpose.Transactional => "transactional",
        Purpose.MarketingNight => "marketing_night",
        _ => "marketing",
    };

    public static string EngagementWord(EngagementKind kind) => kind switch
    {
        EngagementKind.Delivered => "delivered",
        EngagementKind.Opened => "opened",
        EngagementKind.Clicked => "clicked",
        EngagementKind.Converted => "converted",
        EngagementKind.Custom => "custom",
        EngagementKind.Received => "received",
        _ => "",
    };

    private sealed class Compilation(DateTimeOffset now, bool restricted, DynamicParameters? parameters = null, string prefix = "p")
    {
        public DynamicParameters Parameters { get; } = parameters ?? new DynamicParameters();
        public Validation Errors { get; } = new();
        public List<SegmentReference> Segments { get; } = [];
        public bool TimeRelative { get; private set; }
        private int _parameters;
        private int _nodes;

        private string P(object? value)
        {
            var name = prefix + _parameters++;
            Parameters.Add(name, value);
            return "@" + name;
        }

        public string Fail(string path, string description)
        {
            Errors.Add(path, description);
            return "false";
        }

        /// <summary>Narrows an uncorrelated subquery to the contacts being evaluated.</summary>
        private string Narrow(string alias) => restricted ? $" AND {alias}.contact_id = ANY(@contacts)" : "";

        public string Node(Rule r, string path, int depth)
        {
            if (++_nodes == MaxNodes + 1) return Fail(path, $"the rule has more than {MaxNodes} nodes");
            if (_nodes > MaxNodes) return "false";
            if (depth > MaxDepth) return Fail(path, $"nests deeper than {MaxDepth} levels");
            var set = new List<string>(1);
            if (r.All.Count > 0) set.Add("all");
            if (r.Any.Count > 0) set.Add("any");
            if (r.Not is not null) set.Add("not");
            if (r.Profile is not null) set.Add("profile");
            if (r.Reachability is not null) set.Add("reachability");
            if (r.Purchases is not null) set.Add("purchases");
            if (r.Engagement is not null) set.Add("engagement");
            if (r.Response is not null) set.Add("response");
            if (r.Rfm is not null) set.Add("rfm");
            if (r.LeadScore is not null) set.Add("lead_score");
            if (r.Tier is not null) set.Add("tier");
            if (r.Segment is not null) set.Add("segment");
            if (set.Count == 0)
                return Fail(path, "must set one of all, any, not, profile, reachability, purchases, engagement, response, rfm, lead_score, tier or segment");
            if (set.Count > 1) return Fail(path, $"sets {string.Join(", ", set)}: a node sets exactly one");
            var part = path + "." + set[0];
            return set[0] switch
            {
                "all" => Group(r.All, " AND ", part, depth),
                "any" => Group(r.Any, " OR ", part, depth),
                "not" => "NOT (" + Node(r.Not!, part, depth + 1) + ")",
                "profile" => Profile(r.Profile!, part),
                "reachability" => Reachability(r.Reachability!, part),
                "purchases" => Purchases(r.Purchases!, part),
                "engagement" => Engagement(r.Engagement!, part),
                "response" => Response(r.Response!, part),
                "rfm" => Rfm(r.Rfm!, part),
                "lead_score" => LeadScore(r.LeadScore!, part),
                "tier" => Tier(r.Tier!, part),
                _ => Segment(r.Segment!, part),
            };
        }

        private string Group(IList<Rule> children, string op, string path, int depth)
        {
            var parts = new string[children.Count];
            for (var i = 0; i < children.Count; i++) parts[i] = Node(children[i], $"{path}[{i}]", depth + 1);
            return "(" + string.Join(op, parts) + ")";
        }

        // ---- profile -------------------------------------------------------------------------------------

        private string Profile(ProfileCondition p, string path) => p.Field switch
        {
            ProfileField.Attribute => Attribute(p, path),
            ProfileField.Tags => Tags(p, path),
            ProfileField.Locale => TextColumn("c.locale", p, path),
            ProfileField.TimeZone => TextColumn("c.time_zone", p, path),
            ProfileField.ExternalId => TextColumn("c.external_id", p, path),
            ProfileField.CreatedAt => CreatedAt(p, path),
            _ => Fail(path + ".field", "is required: attribute, tags, locale, time_zone, created_at or external_id"),
        };

        private string Attribute(ProfileCondition p, string path)
        {
            if (string.IsNullOrWhiteSpace(p.Attribute) || p.Attribute.Length > 128)
                return Fail(path + ".attribute", "must name the custom attribute (1 to 128 characters)");
            var name = P(p.Attribute);
            var node = $"c.attributes -> {name}";
            switch (p.Op)
            {
                case Operator.Exists: return $"coalesce(jsonb_typeof({node}), 'null') <> 'null'";
                case Operator.NotExists: return $"coalesce(jsonb_typeof({node}), 'null') = 'null'";
                case Operator.WithinLastDays:
                case Operator.MoreThanDaysAgo:
                case Operator.Between:
                    return DateOrNumberOps(p, path, kind => Typed(kind, node, name));
                case Operator.Contains:
                    if (!OneValue(p, path, Value.KindOneofCase.StringValue, out var s)) return "false";
                    return $"coalesce(strpos(lower({Typed(Value.KindOneofCase.StringValue, node, name)}), lower({P(s.StringValue)})) > 0, false)";
                case Operator.Equals:
                case Operator.NotEquals:
                case Operator.In:
                    var kind = ValuesKind(p, path, null);
                    if (kind == Value.KindOneofCase.None) return "false";
                    var expr = Typed(kind, node, name);
                    if (p.Op == Operator.In) return $"coalesce({expr} = ANY({P(ArrayOf(kind, p.Values))}), false)";
                    var eq = $"coalesce({expr} = {P(Scalar(p.Values[0]))}, false)";
                    return p.Op == Operator.Equals ? eq : "NOT " + eq;
                default:
                    return Fail(path + ".op", "is required");
            }
        }

        /// <summary>The attribute as the value's type; NULL when it is absent or stored as another type.</summary>
        private static string Typed(Value.KindOneofCase kind, string node, string name) => kind switch
        {
            Value.KindOneofCase.StringValue => $"(CASE WHEN jsonb_typeof({node}) = 'string' THEN c.attributes ->> {name} END)",
            Value.KindOneofCase.NumberValue => $"(CASE WHEN jsonb_typeof({node}) = 'number' THEN (c.attributes ->> {name})::float8 END)",
            Value.KindOneofCase.BoolValue => $"(CASE WHEN jsonb_typeof({node}) = 'boolean' THEN (c.attributes ->> {name})::boolean END)",
            // Contacts stores dates as {"$date": "<ISO 8601>"}; anything else is not a date.
            _ => $"(CASE WHEN ({node} ->> '$date') ~ '^\\d{{4}}-\\d{{2}}-\\d{{2}}' THEN ({node} ->> '$date')::timestamptz END)",
        };

        private string Tags(ProfileCondition p, string path)
        {
            switch (p.Op)
            {
                case Operator.Exists: return "cardinality(c.tags) > 0";
                case Operator.NotExists: return "cardinality(c.tags) = 0";
                case Operator.Equals:
                case Operator.NotEquals:
                case Operator.In:
                    if (ValuesKind(p, path, Value.KindOneofCase.StringValue) == Value.KindOneofCase.None) return "false";
                    if (p.Op == Operator.In) return $"c.tags && {P(p.Values.Select(v => v.StringValue).ToArray())}";
                    var has = $"c.tags @> {P(new[] { p.Values[0].StringValue })}";
                    return p.Op == Operator.Equals ? has : "NOT " + has;
                default:
                    return Fail(path + ".op", "tags take equals (has the tag), not_equals, in (has any), exists or not_exists");
            }
        }

        private string TextColumn(string column, ProfileCondition p, string path)
        {
            switch (p.Op)
            {
                case Operator.Exists: return $"coalesce({column}, '') <> ''";
                case Operator.NotExists: return $"coalesce({column}, '') = ''";
                case Operator.Contains:
                    if (!OneValue(p, path, Value.KindOneofCase.StringValue, out var s)) return "false";
                    return $"coalesce(strpos(lower({column}), lower({P(s.StringValue)})) > 0, false)";
                case Operator.Equals:
                case Operator.NotEquals:
                case Operator.In:
                    if (ValuesKind(p, path, Value.KindOneofCase.StringValue) == Value.KindOneofCase.None) return "false";
                    if (p.Op == Operator.In) return $"coalesce({column} = ANY({P(p.Values.Select(v => v.StringValue).ToArray())}), false)";
                    var eq = $"coalesce({column} = {P(p.Values[0].StringValue)}, false)";
                    return p.Op == Operator.Equals ? eq : "NOT " + eq;
                default:
                    return Fail(path + ".op", "takes equals, not_equals, in, contains, exists or not_exists");
            }
        }

        private string CreatedAt(ProfileCondition p, string path) => p.Op switch
        {
            Operator.Between or Operator.WithinLastDays or Operator.MoreThanDaysAgo =>
                DateOrNumberOps(p, path, _ => "c.created_at", onlyDates: true),
            _ => Fail(path + ".op", "created_at takes between, within_last_days or more_than_days_ago"),
        };

        /// <summary>between (numbers or dates), within_last_days and more_than_days_ago (dates).</summary>
        private string DateOrNumberOps(ProfileCondition p, string path, Func<Value.KindOneofCase, string> expr, bool onlyDates = false)
        {
            if (p.Op is Operator.WithinLastDays or Operator.MoreThanDaysAgo)
            {
                if (p.Days <= 0 || p.Days > MaxDays) return Fail(path + ".days", $"must be 1 to {MaxDays}");
                TimeRelative = true;
                var date = expr(Value.KindOneofCase.DateValue);
                var since = P(now.AddDays(-p.Days).UtcDateTime);
                return p.Op == Operator.WithinLastDays
                    ? $"coalesce({date} >= {since} AND {date} <= {P(now.UtcDateTime)}, false)"
                    : $"coalesce({date} < {since}, false)";
            }
            if (p.Min is null && p.Max is null) return Fail(path, "between needs min, max or both");
            var kind = (p.Min ?? p.Max)!.KindCase;
            if (kind is not (Value.KindOneofCase.NumberValue or Value.KindOneofCase.DateValue) || (onlyDates && kind != Value.KindOneofCase.DateValue))
                return Fail(path + (p.Min is null ? ".max" : ".min"), onlyDates ? "must be a date_value" : "must be a number_value or a date_value");
            if (p.Min is not null && p.Max is not null && p.Min.KindCase != p.Max.KindCase) return Fail(path + ".max", "must have the same type as min");
            var e = expr(kind);
            var parts = new List<string>(2);
            if (p.Min is not null) parts.Add($"{e} >= {P(Scalar(p.Min))}");
            if (p.Max is not null) parts.Add($"{e} <= {P(Scalar(p.Max))}");
            return $"coalesce({string.Join(" AND ", parts)}, false)";
        }

        private bool OneValue(ProfileCondition p, string path, Value.KindOneofCase kind, out Value value)
        {
            value = p.Values.Count > 0 ? p.Values[0] : new Value();
            if (p.Values.Count != 1) { Fail(path + ".values", "takes exactly one value"); return false; }
            if (value.KindCase != kind) { Fail(path + ".values[0]", $"must be a {KindName(kind)}"); return false; }
            return true;
        }

        /// <returns>The values' one type, or None after recording why not.</returns>
        private Value.KindOneofCase ValuesKind(ProfileCondition p, string path, Value.KindOneofCase? required)
        {
            if (p.Values.Count == 0) { Fail(path + ".values", "needs at least one value"); return Value.KindOneofCase.None; }
            if (p.Op != Operator.In && p.Values.Count > 1) { Fail(path + ".values", "takes exactly one value (use op in for several)"); return Value.KindOneofCase.None; }
            if (p.Values.Count > MaxListValues) { Fail(path + ".values", $"takes at most {MaxListValues} values"); return Value.KindOneofCase.None; }
            var kind = required ?? p.Values[0].KindCase;
            for (var i = 0; i < p.Values.Count; i++)
            {
                var k = p.Values[i].KindCase;
                if (k == Value.KindOneofCase.None) { Fail($"{path}.values[{i}]", "must set string_value, number_value, bool_value or date_value"); return Value.KindOneofCase.None; }
                if (k != kind) { Fail($"{path}.values[{i}]", $"must be a {KindName(kind)}{(required is null ? " like values[0]" : "")}"); return Value.KindOneofCase.None; }
            }
            return kind;
        }

        private static string KindName(Value.KindOneofCase kind) => kind switch
        {
            Value.KindOneofCase.StringValue => "string_value",
            Value.KindOneofCase.NumberValue => "number_value",
            Value.KindOneofCase.BoolValue => "bool_value",
            _ => "date_value",
        };

        private static object? Scalar(Value v) => v.KindCase switch
        {
            Value.KindOneofCase.StringValue => v.StringValue,
            Value.KindOneofCase.NumberValue => v.NumberValue,
            Value.KindOneofCase.BoolValue => v.BoolValue,
            Value.KindOneofCase.DateValue => v.DateValue.ToDateTime(),
            _ => null,
        };

        private static object ArrayOf(Value.KindOneofCase kind, IEnumerable<Value> values) => kind switch
        {
            Value.KindOneofCase.StringValue => values.Select(v => v.StringValue).ToArray(),
            Value.KindOneofCase.NumberValue => values.Select(v => v.NumberValue).ToArray(),
            Value.KindOneofCase.BoolValue => values.Select(v => v.BoolValue).ToArray(),
            _ => values.Select(v => v.DateValue.ToDateTime()).ToArray(),
        };

        // ---- reachability --------------------------------------------------------------------------------

        private string Reachability(ReachabilityCondition r, string path)
        {
            if (r.Channel == Channel.Unspecified) return Fail(path + ".channel", "is required: email, sms, push or kakao");
            var purpose = r.Purpose == Purpose.Unspecified ? Purpose.Marketing : r.Purpose;
            return r.State switch
            {
                V1.Reachability.OptedIn => Consent(r.Channel, purpose, "opted_in"),
                V1.Reachability.OptedOut => Consent(r.Channel, purpose, "opted_out"),
                V1.Reachability.Unreachable => Unreachable(r.Channel),
                V1.Reachability.HasAddress => Address(r.Channel),
                V1.Reachability.Reachable => ReachableOn(r.Channel, purpose),
                _ => Fail(path + ".state", "is required: opted_in, opted_out, unreachable, has_address or reachable"),
            };
        }

        private string Consent(Channel channel, Purpose purpose, string status) =>
            $"EXISTS (SELECT 1 FROM consents k WHERE k.tenant_id = @tenant AND k.contact_id = c.contact_id AND k.channel = {P(ChannelWord(channel))} AND k.purpose = {P(PurposeWord(purpose))} AND k.status = {P(status)})";

        private string Unreachable(Channel channel) =>
            $"EXISTS (SELECT 1 FROM unreachable_channels u WHERE u.tenant_id = @tenant AND u.contact_id = c.contact_id AND u.channel = {P(ChannelWord(channel))})";

        /// <summary>KakaoTalk business messages are addressed by phone number.</summary>
        private static string Address(Channel channel) => channel switch
        {
            Channel.Email => "c.has_email",
            Channel.Push => "c.push_tokens > 0",
            _ => "c.has_phone",
        };

        /// <summary>As Delivery decides: an address, not suppressed, not unreachable; marketing needs an opt-in, transactional no opt-out.</summary>
        public string ReachableOn(Channel channel, Purpose purpose)
        {
            var consent = purpose == Purpose.Transactional ? "NOT " + Consent(channel, purpose, "opted_out") : Consent(channel, purpose, "opted_in");
            return $"({Address(channel)} AND NOT c.suppressed AND NOT {Unreachable(channel)} AND {consent})";
        }

        // ---- purchases -----------------------------------------------------------------------------------

        private string Purchases(PurchaseCondition p, string path)
        {
            if (p.Measure == PurchaseMeasure.Unspecified)
                return Fail(path + ".measure", "is required: count, total, average_order_value, days_since_first, days_since_last, bought, never_bought, refunds or cancellations");
            var window = Window(p.Window, path + ".window", "o");
            var items = Items(p.Skus, p.Categories, path, "o");
            if (window is null || items is null || !RangeIsValid(p.Range, path + ".range")) return "false";
            var status = p.Measure switch
            {
                PurchaseMeasure.Refunds => "refunded",
                PurchaseMeasure.Cancellations => "cancelled",
                _ => "completed",
            };
            var where = $"o.tenant_id = @tenant AND o.status = {P(status)}{window.Sql}{items}";
            var lines = p.Skus.Count + p.Categories.Count > 0;
            switch (p.Measure)
            {
                case PurchaseMeasure.Bought:
                case PurchaseMeasure.NeverBought:
                    if (!lines) return Fail(path + ".skus", "bought and never_bought need skus or categories");
                    if (p.Measure == PurchaseMeasure.Bought) return Exists("orders o", "o", where);
                    return DidNot(NotExists("orders o", "o", where), p.NewContacts, window);
                case PurchaseMeasure.Count:
                case PurchaseMeasure.Refunds:
                case PurchaseMeasure.Cancellations:
                    return Count("orders o", "o", where, p.Range, p.NewContacts, window);
                case PurchaseMeasure.Total:
                case PurchaseMeasure.AverageOrderValue:
                    if (p.Range is null || (!p.Range.HasMin && !p.Range.HasMax)) return Fail(path + ".range", "needs min, max or both");
                    var from = lines ? LinesOf(p.Skus, p.Categories) : "orders o";
                    var agg = (p.Measure, lines) switch
                    {
                        (PurchaseMeasure.Total, true) => "coalesce(sum(l.amount), 0)",
                        (PurchaseMeasure.Total, false) => "sum(o.total)",
                        (_, true) => "coalesce(sum(l.amount), 0) / count(DISTINCT o.order_id)",
                        _ => "avg(o.total)",
                    };
                    var having = RangeSql(agg, p.Range, money: true);
                    // A contact without orders has a total of zero, and no average at all.
                    if (p.Measure == PurchaseMeasure.Total && Admits(p.Range, 0))
                        return DidNot(NotGrouped(from, "o", where, having), p.NewContacts, window);
                    return Grouped(from, "o", where, having);
                default: // days since the first / last completed order: floor(days) in range, as times
                    if (p.Range is null || (!p.Range.HasMin && !p.Range.HasMax)) return Fail(path + ".range", "needs min, max or both");
                    TimeRelative = true;
                    var at = p.Measure == PurchaseMeasure.DaysSinceFirst ? "min(o.occurred_at)" : "max(o.occurred_at)";
                    var bounds = new List<string>(2);
                    if (p.Range.HasMin) bounds.Add($"{at} <= {P(now.AddDays(-Math.Clamp(Math.Ceiling(p.Range.Min), -MaxDays, MaxDays)).UtcDateTime)}");
                    if (p.Range.HasMax) bounds.Add($"{at} > {P(now.AddDays(-Math.Clamp(Math.Floor(p.Range.Max) + 1, -MaxDays, MaxDays)).UtcDateTime)}");
                    return Grouped("orders o", "o", where, string.Join(" AND ", bounds));
            }
        }

        /// <summary>The order's lines matching the skus / categories (parallel arrays, unnested beside each order).</summary>
        private string LinesOf(IList<string> skus, IList<string> categories)
        {
            var match = new List<string>(2);
            if (skus.Count > 0) match.Add($"l.sku = ANY({P(skus.ToArray())})");
            if (categories.Count > 0) match.Add($"l.category = ANY({P(categories.ToArray())})");
            return $"orders o CROSS JOIN LATERAL (SELECT * FROM unnest(o.skus, o.categories, o.amounts) AS l(sku, category, amount) WHERE {string.Join(" OR ", match)}) l";
        }

        /// <returns>The order-level filter on skus / categories ("" when none), or null after recording why not.</returns>
        private string? Items(IList<string> skus, IList<string> categories, string path, string alias)
        {
            if (!NamesAreValid(skus, path + ".skus") || !NamesAreValid(categories, path + ".categories")) return null;
            var any = new List<string>(2);
            if (skus.Count > 0) any.Add($"{alias}.skus && {P(skus.ToArray())}");
            if (categories.Count > 0) any.Add($"{alias}.categories && {P(categories.ToArray())}");
            return any.Count == 0 ? "" : $" AND ({string.Join(" OR ", any)})";
        }

        private bool NamesAreValid(IList<string> names, string path)
        {
            if (names.Count > MaxListValues) { Fail(path, $"takes at most {MaxListValues} values"); return false; }
            for (var i = 0; i < names.Count; i++)
                if (string.IsNullOrWhiteSpace(names[i]) || names[i].Length > MaxNameLength) { Fail($"{path}[{i}]", $"must be 1 to {MaxNameLength} characters"); return false; }
            return true;
        }

        // ---- engagement and responses --------------------------------------------------------------------

        private string Engagement(EngagementCondition e, string path)
        {
            if (e.Kind == EngagementKind.Unspecified)
                return Fail(path + ".kind", "is required: received, delivered, opened, clicked, converted or custom");
            var alias = e.Kind == EngagementKind.Received ? "m" : "e";
            var window = Window(e.Window, path + ".window", alias);
            if (window is null || !RangeIsValid(e.Count, path + ".count")) return "false";
            var where = new System.Text.StringBuilder();
            if (e.Kind == EngagementKind.Received)
            {
                if (e.EventName.Length > 0) return Fail(path + ".event_name", "is for custom events only");
                if (e.Properties.Count > 0) return Fail(path + ".properties", "received messages have no properties");
                where.Append("m.tenant_id = @tenant AND m.outcome = 'sent'");
            }
            else
            {
                where.Append($"e.tenant_id = @tenant AND e.type = {P(EngagementWord(e.Kind))}");
                if (e.Kind == EngagementKind.Custom)
                {
                    if (string.IsNullOrWhiteSpace(e.EventName) || e.EventName.Length > MaxNameLength)
                        return Fail(path + ".event_name", $"custom events need the event's name (1 to {MaxNameLength} characters)");
                    where.Append($" AND e.name = {P(e.EventName)}");
                }
                else if (e.EventName.Length > 0) return Fail(path + ".event_name", "is for custom events only");
                if (e.Properties.Count > 0)
                {
                    var properties = Properties(e.Properties, path + ".properties");
                    if (properties is null) return "false";
                    where.Append($" AND e.properties @> {P(properties)}::jsonb");
                }
            }
            if (e.CampaignId.Length > 0) where.Append($" AND {alias}.campaign_id = {P(e.CampaignId)}");
            if (e.Channel != Channel.Unspecified) where.Append($" AND {alias}.channel = {P(ChannelWord(e.Channel))}");
            where.Append(window.Sql);
            return Count(alias == "m" ? "messages m" : "engagement e", alias, where.ToString(), e.Count, e.NewContacts, window);
        }

        /// <summary>{"name": value, ...} for containment; properties compare strings, numbers and booleans.</summary>
        private string? Properties(IList<PropertyMatch> matches, string path)
        {
            var buffer = new System.Buffers.ArrayBufferWriter<byte>();
            using (var w = new Utf8JsonWriter(buffer))
            {
                w.WriteStartObject();
                for (var i = 0; i < matches.Count; i++)
                {
                    var m = matches[i];
                    if (string.IsNullOrWhiteSpace(m.Name) || m.Name.Length > 128) { Fail($"{path}[{i}].name", "must be 1 to 128 characters"); return null; }
                    w.WritePropertyName(m.Name);
                    switch (m.Equals_?.KindCase)
                    {
                        case Value.KindOneofCase.StringValue: w.WriteStringValue(m.Equals_.StringValue); break;
                        case Value.KindOneofCase.NumberValue: w.WriteNumberValue(m.Equals_.NumberValue); break;
                        case Value.KindOneofCase.BoolValue: w.WriteBooleanValue(m.Equals_.BoolValue); break;
                        default: Fail($"{path}[{i}].equals", "must be a string_value, number_value or bool_value"); return null;
                    }
                }
                w.WriteEndObject();
            }
            return System.Text.Encoding.UTF8.GetString(buffer.WrittenSpan);
        }

        /// <summary>
        /// Received a message and then did (or did not) respond within N days of it. A response belongs to the
        /// message by its message id, or by its campaign. Non-responders are only those whose N days have passed.
        /// </summary>
        private string Response(ResponseCondition r, string path)
        {
            if (r.Response is not (EngagementKind.Opened or EngagementKind.Clicked or EngagementKind.Converted))
                return Fail(path + ".response", "must be opened, clicked or converted");
            if (r.WithinDays <= 0 || r.WithinDays > MaxDays) return Fail(path + ".within_days", $"must be 1 to {MaxDays}");
            var window = Window(r.Window, path + ".window", "m");
            if (window is null) return "false";
            TimeRelative = true;
            var received = new System.Text.StringBuilder("m.tenant_id = @tenant AND m.contact_id = c.contact_id AND m.outcome = 'sent'");
            if (r.CampaignId.Length > 0) received.Append($" AND m.campaign_id = {P(r.CampaignId)}");
            if (r.Channel != Channel.Unspecified) received.Append($" AND m.channel = {P(ChannelWord(r.Channel))}");
            received.Append(window.Sql);
            var within = TimeSpan.FromDays(r.WithinDays);
            var responded = $"""
                EXISTS (SELECT 1 FROM engagement e WHERE e.tenant_id = @tenant AND e.contact_id = m.contact_id AND e.type = {P(EngagementWord(r.Response))}
                    AND e.occurred_at >= m.occurred_at AND e.occurred_at <= m.occurred_at + {P(within)}
                    AND (e.message_id = m.message_id::text OR (m.campaign_id IS NOT NULL AND e.campaign_id = m.campaign_id)))
                """;
            var any = $"EXISTS (SELECT 1 FROM messages m WHERE {received} AND {responded})";
            if (r.Responded) return any;
            return $"(EXISTS (SELECT 1 FROM messages m WHERE {received} AND m.occurred_at <= {P(now.Add(-within).UtcDateTime)}) AND NOT {any})";
        }

        // ---- scores, tiers, other segments ---------------------------------------------------------------

        private string Rfm(RfmCondition r, string path)
        {
            if (r.Segments.Count == 0 && r.R is null && r.F is null && r.M is null) return Fail(path, "needs segments, r, f or m");
            if (!NamesAreValid(r.Segments, path + ".segments") || !RangeIsValid(r.R, path + ".r") || !RangeIsValid(r.F, path + ".f") || !RangeIsValid(r.M, path + ".m")) return "false";
            TimeRelative = true; // scores are recomputed on their own schedule
            var where = new List<string> { "s.tenant_id = @tenant", "s.contact_id = c.contact_id" };
            if (r.Segments.Count > 0) where.Add($"s.segment = ANY({P(r.Segments.ToArray())})");
            if (r.R is not null) where.Add(RangeSql("s.r", r.R));
            if (r.F is not null) where.Add(RangeSql("s.f", r.F));
            if (r.M is not null) where.Add(RangeSql("s.m", r.M));
            return $"EXISTS (SELECT 1 FROM rfm_scores s WHERE {string.Join(" AND ", where)})";
        }

        /// <summary>A contact without a score row has a score of zero and is not qualified.</summary>
        private string LeadScore(LeadScoreCondition l, string path)
        {
            if (l.Score is null && !l.HasQualified) return Fail(path, "needs score, qualified or both");
            if (!RangeIsValid(l.Score, path + ".score")) return "false";
            TimeRelative = true; // scores decay with time
            var where = new List<string> { "l.tenant_id = @tenant", "l.contact_id = c.contact_id" };
            if (l.Score is not null) where.Add(RangeSql("l.score", l.Score));
            if (l.HasQualified) where.Add($"l.qualified = {P(l.Qualified)}");
            var scored = $"EXISTS (SELECT 1 FROM lead_scores l WHERE {string.Join(" AND ", where)})";
            var unscoredMatches = (l.Score is null || Admits(l.Score, 0)) && !(l.HasQualified && l.Qualified);
            return unscoredMatches
                ? $"({scored} OR NOT EXISTS (SELECT 1 FROM lead_scores l WHERE l.tenant_id = @tenant AND l.contact_id = c.contact_id))"
                : scored;
        }

        private string Tier(TierCondition t, string path)
        {
            if (t.Tiers.Count == 0) return Fail(path + ".tiers", "needs at least one tier");
            if (!NamesAreValid(t.Tiers, path + ".tiers")) return "false";
            TimeRelative = true; // tiers look at a trailing window
            return $"EXISTS (SELECT 1 FROM contact_tiers t WHERE t.tenant_id = @tenant AND t.contact_id = c.contact_id AND t.tier = ANY({P(t.Tiers.ToArray())}))";
        }

        private string Segment(SegmentCondition s, string path)
        {
            if (!Guid.TryParse(s.SegmentId, out var id)) return Fail(path + ".segment_id", "must be a segment id");
            Segments.Add(new SegmentReference(id, path + ".segment_id"));
            return $"EXISTS (SELECT 1 FROM segment_members sm WHERE sm.tenant_id = @tenant AND sm.segment_id = {P(id)} AND sm.contact_id = c.contact_id)";
        }

        // ---- windows, ranges and the shapes of subqueries -----------------------------------------------

        /// <param name="Start">When the window opens (null: all time), for new_contacts.</param>
        private sealed record CompiledWindow(string Sql, DateTimeOffset? Start);

        private CompiledWindow? Window(TimeWindow? w, string path, string alias)
        {
            if (w is null) return new CompiledWindow("", null);
            var absolute = w.From is not null || w.To is not null;
            if (w.LastDays != 0 && absolute) { Fail(path, "sets last_days or from / to, not both"); return null; }
            if (w.LastDays != 0)
            {
                if (w.LastDays < 0 || w.LastDays > MaxDays) { Fail(path + ".last_days", $"must be 1 to {MaxDays}"); return null; }
                TimeRelative = true;
                var start = now.AddDays(-w.LastDays);
                // No upper bound: an event stamped a little ahead of this clock still counts.
                return new CompiledWindow($" AND {alias}.occurred_at >= {P(start.UtcDateTime)}", start);
            }
            if (!absolute) { Fail(path, "needs last_days, or from and / or to"); return null; }
            if (w.From is not null && w.To is not null && w.From.ToDateTimeOffset() >= w.To.ToDateTimeOffset()) { Fail(path + ".to", "must be after from"); return null; }
            var sql = "";
            if (w.From is not null) sql += $" AND {alias}.occurred_at >= {P(w.From.ToDateTime())}";
            if (w.To is not null) sql += $" AND {alias}.occurred_at < {P(w.To.ToDateTime())}";
            return new CompiledWindow(sql, w.From?.ToDateTimeOffset());
        }

        private bool RangeIsValid(NumberRange? r, string path)
        {
            if (r is null) return true;
            if (r.HasMin && !double.IsFinite(r.Min)) { Fail(path + ".min", "must be a finite number"); return false; }
            if (r.HasMax && !double.IsFinite(r.Max)) { Fail(path + ".max", "must be a finite number"); return false; }
            if (r.HasMin && Math.Abs(r.Min) > 1e15) { Fail(path + ".min", "is out of range"); return false; }
            if (r.HasMax && Math.Abs(r.Max) > 1e15) { Fail(path + ".max", "is out of range"); return false; }
            if (r.HasMin && r.HasMax && r.Min > r.Max) { Fail(path + ".max", "must not be below min"); return false; }
            return true;
        }

        private static bool Admits(NumberRange r, double x) => (!r.HasMin || r.Min <= x) && (!r.HasMax || r.Max >= x);

        private string RangeSql(string expr, NumberRange r, bool money = false)
        {
            var parts = new List<string>(2);
            if (r.HasMin) parts.Add($"{expr} >= {P(money ? (object)(decimal)r.Min : r.Min)}");
            if (r.HasMax) parts.Add($"{expr} <= {P(money ? (object)(decimal)r.Max : r.Max)}");
            return parts.Count == 0 ? "true" : string.Join(" AND ", parts);
        }

        /// <summary>How many rows: at least once (the default), never, or a range.</summary>
        private string Count(string from, string alias, string where, NumberRange? range, NewContacts newContacts, CompiledWindow window)
        {
            range ??= new NumberRange { Min = 1 };
            if (!range.HasMin && !range.HasMax) range = new NumberRange { Min = 1 };
            if (!Admits(range, 0))
                return !range.HasMax && range.Min <= 1 ? Exists(from, alias, where) : Grouped(from, alias, where, RangeSql("count(*)", range));
            var none = range.HasMax && range.Max < 1
                ? NotExists(from, alias, where)
                : NotGrouped(from, alias, where, RangeSql("count(*)", range));
            return DidNot(none, newContacts, window);
        }

        /// <summary>
        /// "Did not do it in the window" for a contact that did not exist for all of it: MATCH (the default) lets
        /// them match; EXCLUDE treats them as too new to tell.
        /// </summary>
        private string DidNot(string predicate, NewContacts newContacts, CompiledWindow window) =>
            newContacts == NewContacts.Exclude && window.Start is { } start
                ? $"({predicate} AND c.created_at <= {P(start.UtcDateTime)})"
                : predicate;

        private static string Exists(string from, string alias, string where) =>
            $"EXISTS (SELECT 1 FROM {from} WHERE {where} AND {alias}.contact_id = c.contact_id)";

        private static string NotExists(string from, string alias, string where) => "NOT " + Exists(from, alias, where);

        private string Grouped(string from, string alias, string where, string having) =>
            $"c.contact_id IN (SELECT {alias}.contact_id FROM {from} WHERE {where}{Narrow(alias)} GROUP BY {alias}.contact_id HAVING {having})";

        /// <summary>Contacts with no rows match too (their count or sum is zero): NOT IN the contacts whose aggregate is out of range.</summary>
        private string NotGrouped(string from, string alias, string where, string having) =>
            $"c.contact_id NOT IN (SELECT {alias}.contact_id FROM {from} WHERE {where}{Narrow(alias)} GROUP BY {alias}.contact_id HAVING NOT ({having}))";
    }
}
