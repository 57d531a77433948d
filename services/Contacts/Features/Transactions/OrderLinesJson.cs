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

    /// <summary>
    /// An order as TransactionsRecorded announces it: its distinct skus and categories (what older consumers
    /// read) and its lines with amount = quantity × unit price.
    /// </summary>
    public static Crm.Contracts.Contacts.RecordedOrder ToRecorded(Guid? contactId, string orderId, DateTime occurredAt, string currency,
        decimal total, string status, string linesJson)
    {
        using var doc = JsonDocument.Parse(linesJson);
        var lines = new List<Crm.Contracts.Contacts.RecordedLine>();
        foreach (var e in doc.RootElement.EnumerateArray())
        {
            var quantity = e[3].GetDecimal();
            lines.Add(new Crm.Contracts.Contacts.RecordedLine(e[0].GetString() ?? "",
                e[2].ValueKind == JsonValueKind.String ? e[2].GetString() : null, quantity, quantity * e[4].GetDecimal()));
        }
        return new Crm.Contracts.Contacts.RecordedOrder(contactId, orderId, new DateTimeOffset(DateTime.SpecifyKind(occurredAt, DateTimeKind.Utc)),
            currency, total, status,
            lines.Select(l => l.Sku).Distinct().ToArray(), lines.Select(l => l.Category).OfType<string>().Distinct().ToArray(), lines);
    }

    public static IEnumerable<LineItem> Read(string json, bool names = true)
    {
        using var doc = JsonDocument.Parse(json);
        var items = new List<LineItem>();
        foreach (var e in doc.RootElement.EnumerateArray())
        {
            items.Add(new LineItem
            {
                Sku = e[0].GetString() ?? "",
                Name = names && e[1].ValueKind == JsonValueKind.String ? e[1].GetString()! : "",
                Category = e[2].ValueKind == JsonValueKind.String ? e[2].GetString()! : "",
                Quantity = e[3].GetDecimal().ToString(CultureInfo.InvariantCulture),
                UnitPrice = e[4].GetDecimal().ToString(CultureInfo.InvariantCulture),
            });
        }
        return items;
    }
}
