using System.Globalization;
using System.Text.Json;
using Crm.BuildingBlocks.Data;
using Dapper;
using Fluid.Values;

namespace Crm.Campaigns.Features.Templates;

/// <summary>
/// What a template sees, and nothing else: <c>contact</c> (id, external_id, locale, time_zone, tier and
/// <c>attributes</c>, typed as Contacts stores them: dates are dates), <c>orders</c> (last_order_at,
/// last_order_total, currency, total_spent, count, top_category; completed orders only) and <c>campaign</c>
/// (id, name and the campaign's data). Read from the service's own projection, one query per page of
/// recipients. (The RFM segment is not in the model: Segmentation publishes no event for it and its
/// ListRfmScores takes no page of contact ids.)
/// </summary>
public static class TemplateModel
{
    public sealed record Facts(
        Guid ContactId, string? ExternalId, string? Locale, string? TimeZone, string? Attributes, string? Tier,
        DateTime? LastOrderAt, decimal? LastOrderTotal, string? Currency, decimal? TotalSpent, long? OrderCount, string? TopCategory,
        bool? HasEmail, bool? HasPhone);

    public sealed record CampaignInfo(Guid CampaignId, string Name, IReadOnlyDictionary<string, string> Data);

    /// <summary>The facts of a page of contacts; a contact the projection does not know yet gets an empty model.</summary>
    public static async Task<Dictionary<Guid, Facts>> LoadAsync(TenantTransaction scope, string tenant, IReadOnlyCollection<Guid> contactIds, CancellationToken ct)
    {
        var rows = await scope.Connection.QueryAsync<Facts>(new CommandDefinition("""
            SELECT i.contact_id AS ContactId, c.external_id AS ExternalId, c.locale AS Locale, c.time_zone AS TimeZone,
                   c.attributes::text AS Attributes, c.tier AS Tier,
                   o.last_order_at AS LastOrderAt, o.last_order_total AS LastOrderTotal, o.currency AS Currency,
                   o.total_spent AS TotalSpent, o.order_count AS OrderCount,
                   (SELECT cat FROM orders o2, unnest(o2.categories) AS cat
                    WHERE o2.tenant_id = @tenant AND o2.contact_id = i.contact_id AND o2.status = 'completed'
                    GROUP BY cat ORDER BY count(*) DESC, cat LIMIT 1) AS TopCategory,
                   c.has_email AS HasEmail, c.has_phone AS HasPhone
            FROM unnest(@ids) AS i(contact_id)
            LEFT JOIN contacts c ON c.tenant_id = @tenant AND c.contact_id = i.contact_id
            LEFT JOIN LATERAL (
                SELECT max(occurred_at) AS last_order_at,
                       (array_agg(total ORDER BY occurred_at DESC))[1] AS last_order_total,
                       (array_agg(currency ORDER BY occurred_at DESC))[1] AS currency,
                       sum(total) AS total_spent, count(*) AS order_count
                FROM orders o WHERE o.tenant_id = @tenant AND o.contact_id = i.contact_id AND o.status = 'completed'
            ) o ON true
            """, new { tenant, ids = contactIds.ToArray() }, scope.Transaction, cancellationToken: ct));
        return rows.ToDictionary(r => r.ContactId);
    }

    public static IReadOnlyDictionary<string, FluidValue> Build(Facts facts, CampaignInfo campaign)
    {
        var contact = new Dictionary<string, FluidValue>
        {
            ["id"] = new StringValue(facts.ContactId.ToString()),
            ["external_id"] = Str(facts.ExternalId),
            ["locale"] = Str(facts.Locale),
            ["time_zone"] = Str(facts.TimeZone),
            ["tier"] = Str(facts.Tier),
            ["attributes"] = facts.Attributes is null ? Dict([]) : FromJson(JsonDocument.Parse(facts.Attributes).RootElement),
        };
        var orders = new Dictionary<string, FluidValue>
        {
            ["count"] = NumberValue.Create(facts.OrderCount ?? 0),
            ["total_spent"] = NumberValue.Create(Normalize(facts.TotalSpent ?? 0)),
            ["last_order_total"] = facts.LastOrderTotal is { } t ? NumberValue.Create(Normalize(t)) : NilValue.Instance,
            ["last_order_at"] = facts.LastOrderAt is { } at ? new DateTimeValue(new DateTimeOffset(DateTime.SpecifyKind(at, DateTimeKind.Utc))) : NilValue.Instance,
            ["currency"] = Str(facts.Currency),
            ["top_category"] = Str(facts.TopCategory),
        };
        var c = new Dictionary<string, FluidValue>();
        foreach (var (k, v) in campaign.Data) c[k] = new StringValue(v);
        c["id"] = new StringValue(campaign.CampaignId.ToString());
        c["name"] = new StringValue(campaign.Name);
        return new Dictionary<string, FluidValue> { ["contact"] = Dict(contact), ["orders"] = Dict(orders), ["campaign"] = Dict(c) };
    }

    /// <summary>The model of a contact nobody knows (a preview for an id the projection has not seen).</summary>
    public static Facts Empty(Guid contactId) => new(contactId, null, null, null, null, null, null, null, null, null, null, null, null, null);

    /// <summary>42000.0000 (numeric(18,4)) renders as 42000.</summary>
    private static decimal Normalize(decimal d) => d / 1.000000000000000000000000000000000m;

    private static FluidValue Str(string? s) => s is null ? NilValue.Instance : new StringValue(s);

    private static FluidValue Dict(Dictionary<string, FluidValue> d) => new DictionaryValue(new FluidValueDictionaryFluidIndexable(d));

    private static FluidValue FromJson(JsonElement e) => e.ValueKind switch
    {
        JsonValueKind.String => new StringValue(e.GetString()!),
        JsonValueKind.Number => NumberValue.Create(e.GetDecimal()),
        JsonValueKind.True => BooleanValue.True,
        JsonValueKind.False => BooleanValue.False,
        JsonValueKind.Array => new ArrayValue(e.EnumerateArray().Select(FromJson).ToArray()),
        JsonValueKind.Object when e.TryGetProperty("$date", out var d) && d.ValueKind == JsonValueKind.String
            && DateTimeOffset.TryParse(d.GetString(), CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var date) => new DateTimeValue(date),
        JsonValueKind.Object => Dict(e.EnumerateObject().ToDictionary(p => p.Name, p => FromJson(p.Value))),
        _ => NilValue.Instance,
    };
}
