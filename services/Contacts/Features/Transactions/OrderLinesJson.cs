using System.Globalization;
using System.Text.Json;
using Crm.Contacts.V1;

namespace Crm.Contacts.Features.Transactions;

/// <summary>
/// The JSON form of an order's line items (orders.lines): one positional array per item,
/// [sku, name, category, quantity, unit_price], with decimals as exact JSON numbers. In SQL,
/// order_lines(lines) reads them by name.
/// </summary>
public static class OrderLinesJson
{
    /// <summary>Korean names stay readable (and compact) in the stored JSON; it is never embedded in HTML.</summary>
    public static readonly JsonWriterOptions WriterOptions = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static void WriteLine(Utf8JsonWriter w, string sku, string? name, string? category, decimal quantity, decimal unitPrice)
    {
        w.WriteStartArray();
        w.WriteStringValue(sku);
        if (name is null) w.WriteNullValue(); else w.WriteStringValue(name);
        if (category is null) w.WriteNullValue(); else w.WriteStringValue(category);
        w.WriteNumberValue(quantity);
        w.WriteNumberValue(unitPrice);
        w.WriteEndArray();
    }

    public static IEnumerable<LineItem> Read(string json)
    {
        using var doc = JsonDocument.Parse(json);
        var items = new List<LineItem>();
        foreach (var e in doc.RootElement.EnumerateArray())
        {
            items.Add(new LineItem
            {
                Sku = e[0].GetString() ?? "",
                Name = e[1].ValueKind == JsonValueKind.String ? e[1].GetString()! : "",
                Category = e[2].ValueKind == JsonValueKind.String ? e[2].GetString()! : "",
                Quantity = e[3].GetDecimal().ToString(CultureInfo.InvariantCulture),
                UnitPrice = e[4].GetDecimal().ToString(CultureInfo.InvariantCulture),
            });
        }
        return items;
    }
}
