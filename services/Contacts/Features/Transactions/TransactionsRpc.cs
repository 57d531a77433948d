using System.Globalization;
using Crm.BuildingBlocks.Data;
using Crm.BuildingBlocks.Errors;
using Crm.BuildingBlocks.Outbox;
using Crm.BuildingBlocks.Tenancy;
using Crm.Contacts.Features.Contacts;
using Crm.Contacts.Features.Transactions;
using Crm.Contracts.Contacts;
using Crm.Contacts.V1;
using Dapper;
using Grpc.Core;
using Npgsql;

namespace Crm.Contacts.Features;

public sealed partial class ContactsGrpcService
{
    private const int MaxOrdersPerCall = 1000;

    public override async Task<RecordTransactionsResponse> RecordTransactions(RecordTransactionsRequest request, ServerCallContext context)
    {
        var caller = context.Caller(Scope.ContactsWrite);
        var ct = context.CancellationToken;
        var tenant = caller.TenantId;

        var v = new Validation();
        if (request.Orders.Count == 0) v.Add("orders", "at least one order is required");
        if (request.Orders.Count > MaxOrdersPerCall) v.Add("orders", $"at most {MaxOrdersPerCall} orders a call; import larger sets");
        var orders = request.Orders.Select((o, i) => ParseOrder(o, $"orders[{i}]", v)).ToList();
        var duplicate = orders.GroupBy(o => o.OrderId).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null) v.Add("orders", $"order_id '{duplicate.Key}' appears twice in the call");
        v.ThrowIfInvalid();

        await using var scope = await _db.BeginAsync(tenant, ct);
        var (conn, tx) = scope;

        // Transactions first: a purchase by an unknown customer id creates the contact.
        var (byExternalId, _) = await PurchaseContacts.EnsureAsync(conn, tx, _suppressions, tenant,
            request.Orders.Where(o => o.Contact is { ExternalId.Length: > 0 }).Select(o => o.Contact.ExternalId.Trim()).Distinct().ToArray(), ct);
        for (var i = 0; i < orders.Count; i++)
        {
            var reference = request.Orders[i].Contact;
            if (reference is null || (reference.Id.Length == 0 && reference.ExternalId.Length == 0)) continue;
            orders[i].ContactId = reference.ExternalId.Length > 0
                ? byExternalId[reference.ExternalId.Trim()]
                : await ResolveAsync(conn, tx, tenant, reference, $"orders[{i}].contact");
        }

        var response = new RecordTransactionsResponse();
        var recorded = new List<RecordedOrder>();
        foreach (var order in orders)
        {
            // xmax = 0 tells a fresh insert from an update of the status of a known order. The event carries
            // the order as stored (a status change names the known order's lines, whatever the request sent).
            var stored = await conn.QuerySingleOrDefaultAsync<StoredOrder>("""
                INSERT INTO orders (tenant_id, order_id, contact_id, occurred_at, utc_offset_minutes, currency, total, status, lines)
                VALUES (@tenant, @OrderId, @ContactId, @OccurredAt, @UtcOffsetMinutes, @Currency, @Total, @Status, @lines::json)
                ON CONFLICT (tenant_id, order_id) DO UPDATE SET status = excluded.status, status_changed_at = now()
                WHERE orders.status IS DISTINCT FROM excluded.status
                RETURNING (xmax = 0) AS inserted, contact_id, occurred_at, currency, total, status, lines::text AS lines
                """, new { tenant, order.OrderId, order.ContactId, order.OccurredAt, order.UtcOffsetMinutes, order.Currency, order.Total, order.Status, lines = order.LinesJson() }, tx);
            if (stored is null)
            {
                response.Unchanged++;
                continue;
            }
            if (stored.Inserted)
            {
                response.Recorded++;
            }
            else
            {
                response.StatusChanged++;
            }
            recorded.Add(OrderLinesJson.ToRecorded(stored.ContactId, order.OrderId, stored.OccurredAt, stored.Currency, stored.Total, stored.Status, stored.Lines));
        }
        if (recorded.Count > 0)
            await Outbox.EnqueueAsync(conn, tx, new TransactionsRecorded(tenant, recorded));
        await tx.CommitAsync(ct);
        return response;
    }

    public override async Task<ListTransactionsResponse> ListTransactions(ListTransactionsRequest request, ServerCallContext context)
    {
        var caller = context.Caller(Scope.ContactsRead);
        var pageSize = PageToken.Size(request.PageSize);
        // Newest first; the token is the last (occurred_at, order_id) of the page.
        DateTime? beforeAt = null;
        string? beforeId = null;
        if (PageToken.Decode(request.PageToken) is { } token)
        {
            var parts = token.Split('|', 2);
            if (parts.Length != 2 || !long.TryParse(parts[0], out var ticks))
                throw new InvalidArgumentException("page_token", "is not a token returned by a previous call");
            beforeAt = new DateTime(ticks, DateTimeKind.Utc);
            beforeId = parts[1];
        }
        await using var scope = await _db.BeginAsync(caller.TenantId, context.CancellationToken);
        var conn = scope.Connection;
        var contactId = await ResolveAsync(conn, null, caller.TenantId, request.Contact, "contact");
        var rows = (await conn.QueryAsync<OrderRow>("""
            SELECT order_id, contact_id, occurred_at, utc_offset_minutes, currency, total, status, lines::text AS lines
            FROM orders
            WHERE tenant_id = @tenant AND contact_id = @contactId
              AND (@beforeAt::timestamptz IS NULL OR (occurred_at, order_id) < (@beforeAt, @beforeId))
            ORDER BY occurred_at DESC, order_id DESC
            LIMIT @limit
            """, new { tenant = caller.TenantId, contactId, beforeAt, beforeId, limit = pageSize + 1 })).AsList();
        var page = rows.Take(pageSize).ToList();
        var response = new ListTransactionsResponse();
        response.Orders.AddRange(page.Select(r => r.ToProto()));
        if (rows.Count > pageSize)
        {
            var last = page[^1];
            response.NextPageToken = PageToken.Encode($"{last.OccurredAt.Ticks}|{last.OrderId}");
        }
        return response;
    }

    public override async Task<ContactSummary> GetContactSummary(GetContactSummaryRequest request, ServerCallContext context)
    {
        var caller = context.Caller(Scope.ContactsRead);
        await using var scope = await _db.BeginAsync(caller.TenantId, context.CancellationToken);
        var conn = scope.Connection;
        var contactId = await ResolveAsync(conn, null, caller.TenantId, request.Contact, "contact");
        var p = new { tenant = caller.TenantId, contactId };
        var counts = await conn.QuerySingleAsync<(DateTime? First, DateTime? Last, long Completed, long Cancelled, long Refunded)>("""
            SELECT min(occurred_at) FILTER (WHERE status = 'completed'),
                   max(occurred_at) FILTER (WHERE status = 'completed'),
                   count(*) FILTER (WHERE status = 'completed'),
                   count(*) FILTER (WHERE status = 'cancelled'),
                   count(*) FILTER (WHERE status = 'refunded')
            FROM orders WHERE tenant_id = @tenant AND contact_id = @contactId
            """, p);
        var totals = await conn.QueryAsync<(string Currency, decimal Total)>("""
            SELECT currency, sum(total) FROM orders
            WHERE tenant_id = @tenant AND contact_id = @contactId AND status = 'completed'
            GROUP BY currency ORDER BY currency
            """, p);
        var summary = new ContactSummary
        {
            ContactId = contactId.ToString(),
            FirstPurchaseAt = Timestamps.OfNullable(counts.First),
            LastPurchaseAt = Timestamps.OfNullable(counts.Last),
            OrderCount = counts.Completed,
            CancelledCount = counts.Cancelled,
            RefundedCount = counts.Refunded,
        };
        summary.TotalSpend.AddRange(totals.Select(t => new CurrencyTotal
        {
            Currency = t.Currency, Total = t.Total.ToString(CultureInfo.InvariantCulture), Formatted = Money.Format(t.Total, t.Currency),
        }));
        return summary;
    }

    private static ParsedOrder ParseOrder(Order o, string path, Validation v)
    {
        var order = new ParsedOrder
        {
            OrderId = o.OrderId.Trim(),
            Currency = o.Currency.Trim().ToUpperInvariant(),
            Status = Words.Of(o.Status),
            UtcOffsetMinutes = o.UtcOffsetMinutes,
        };
        if (!ContactFields.IsValidKey(order.OrderId, 256)) v.Add($"{path}.order_id", "is required (1 to 256 characters)");
        if (o.OccurredAt is null) v.Add($"{path}.occurred_at", "is required");
        else order.OccurredAt = o.OccurredAt.ToDateTime();
        if (order.Currency.Length != 3 || !order.Currency.All(char.IsAsciiLetterUpper)) v.Add($"{path}.currency", "must be an ISO 4217 code such as KRW");
        if (o.UtcOffsetMinutes is < -840 or > 840) v.Add($"{path}.utc_offset_minutes", "must be between -840 and 840");
        for (var i = 0; i < o.Lines.Count; i++)
        {
            var l = o.Lines[i];
            var line = new ParsedLine { Sku = l.Sku.Trim(), Name = NullIfEmpty(l.Name), Category = NullIfEmpty(l.Category) };
            if (line.Sku.Length == 0) v.Add($"{path}.lines[{i}].sku", "is required");
            if (!Decimals.TryParse(l.Quantity, out var q)) v.Add($"{path}.lines[{i}].quantity", $"'{l.Quantity}' is not a decimal number");
            if (!Decimals.TryParse(l.UnitPrice, out var p) || p < 0) v.Add($"{path}.lines[{i}].unit_price", $"'{l.UnitPrice}' is not a non-negative decimal number");
            line.Quantity = q;
            line.UnitPrice = p;
            order.Lines.Add(line);
        }
        if (o.Total.Length > 0)
        {
            if (Decimals.TryParse(o.Total, out var total)) order.Total = total;
            else v.Add($"{path}.total", $"'{o.Total}' is not a decimal number");
        }
        else if (o.Lines.Count == 0)
        {
            v.Add($"{path}.total", "is required when the order has no lines");
        }
        else
        {
            order.Total = order.Lines.Sum(l => l.Quantity * l.UnitPrice);
        }
        return order;
    }

    private sealed class ParsedOrder
    {
        public string OrderId { get; set; } = "";
        public Guid? ContactId { get; set; }
        public DateTime OccurredAt { get; set; }
        public int UtcOffsetMinutes { get; set; }
        public string Currency { get; set; } = "";
        public decimal Total { get; set; }
        public string Status { get; set; } = "";
        public List<ParsedLine> Lines { get; } = [];

        public string LinesJson()
        {
            var buffer = new System.Buffers.ArrayBufferWriter<byte>();
            using (var w = new System.Text.Json.Utf8JsonWriter(buffer, OrderLinesJson.WriterOptions))
            {
                w.WriteStartArray();
                foreach (var l in Lines) OrderLinesJson.WriteLine(w, l.Sku, l.Name, l.Category, l.Quantity, l.UnitPrice);
                w.WriteEndArray();
            }
            return System.Text.Encoding.UTF8.GetString(buffer.WrittenSpan);
        }
    }

    private sealed class ParsedLine
    {
        public string Sku { get; set; } = "";
        public string? Name { get; set; }
        public string? Category { get; set; }
        public decimal Quantity { get; set; }
        public decimal UnitPrice { get; set; }
    }
}

internal sealed class StoredOrder
{
    public bool Inserted { get; set; }
    public Guid? ContactId { get; set; }
    public DateTime OccurredAt { get; set; }
    public string Currency { get; set; } = "";
    public decimal Total { get; set; }
    public string Status { get; set; } = "";
    public string Lines { get; set; } = "[]";
}

internal sealed class OrderRow
{
    public string OrderId { get; set; } = "";
    public Guid? ContactId { get; set; }
    public DateTime OccurredAt { get; set; }
    public int UtcOffsetMinutes { get; set; }
    public string Currency { get; set; } = "";
    public decimal Total { get; set; }
    public string Status { get; set; } = "";
    public string Lines { get; set; } = "[]";

    /// <param name="lineNames">False for exports: a projection needs no product names.</param>
    public Order ToProto(bool lineNames = true)
    {
        var order = new Order
        {
            OrderId = OrderId,
            ContactId = ContactId?.ToString() ?? "",
            OccurredAt = Timestamps.Of(OccurredAt),
            UtcOffsetMinutes = UtcOffsetMinutes,
            Currency = Currency,
            Total = Total.ToString(CultureInfo.InvariantCulture),
            Status = Words.ToOrderStatus(Status),
        };
        order.Lines.AddRange(OrderLinesJson.Read(Lines, lineNames));
        return order;
    }
}

public static class Decimals
{
    /// <summary>Money and quantities are decimals, written with '.' (never floating point).</summary>
    public static bool TryParse(string s, out decimal value) =>
        decimal.TryParse(s, NumberStyles.AllowLeadingSign | NumberStyles.AllowDecimalPoint | NumberStyles.AllowLeadingWhite | NumberStyles.AllowTrailingWhite,
            CultureInfo.InvariantCulture, out value);
}
