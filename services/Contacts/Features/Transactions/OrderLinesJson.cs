using System.Globalization;
using System.Text.Json;
using Crm.Contacts.V1;

namespace Crm.Contacts.Features.Transactions;

/// <summary>The JSON form of an order's line items (orders.lines): decimals as exact JSON numbers.</summary>
public static class OrderLinesJson
{
    /// <summary>Korean names stay readable (and compact) in the stored JSON; it is never embedded in HTML.</summary>
    public static readonly JsonWriterOptions WriterOptions = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static void WriteLine(Utf8JsonWriter w, string sku, string? name, string? category, decimal quantity, decimal unitPrice)
    {
        w.WriteStartObject();
        w.WriteString("sku"u8, sku);
        if (name is null) w.WriteNull("name"u8); else w.WriteString("name"u8, name);
        if (category is null) w.WriteNull("category"u8); else w.WriteString("category"u8, category);
        w.WriteNumber("quantity"u8, quantity);
        w.WriteNumber("unit_price"u8, unitPrice);
        w.WriteEndObject();
    }

    public static IEnumerable<LineItem> Read(string json)
    {
        using var doc = JsonDocument.Parse(json);
        var items = new List<LineItem>();
        foreach (var e in doc.RootElement.EnumerateArray())
        {
            items.Add(new LineItem
            {
                Sku = e.GetProperty("sku").GetString() ?? "",
                Name = e.TryGetProperty("name", out var n) && n.ValueKind == JsonValueKind.String ? n.GetString()! : "",
                Category = e.TryGetProperty("category", out var c) && c.ValueKind == JsonValueKind.String ? c.GetString()! : "",
                Quantity = e.GetProperty("quantity").GetDecimal().ToString(CultureInfo.InvariantCulture),
                UnitPrice = e.GetProperty("unit_price").GetDecimal().ToString(CultureInfo.InvariantCulture),
            });
        }
        return items;
    }
}
