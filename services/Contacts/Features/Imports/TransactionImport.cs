using System.Globalization;
using Crm.BuildingBlocks.Errors;
using Crm.BuildingBlocks.Outbox;
using Crm.Contacts.Features.Contacts;
using Crm.Contacts.Features.Workspaces;
using Crm.Contracts.Contacts;
using Crm.Contacts.V1;
using Dapper;
using Npgsql;
using NpgsqlTypes;

namespace Crm.Contacts.Features.Imports;

/// <summary>
/// Line-item CSV (one row per item, as POS and shop exports write them) → orders. Rows stream
/// through binary COPY into a temporary staging table; one set-based merge then groups them into
/// orders by order id, creates unknown customers, and skips orders already recorded, so importing
/// the same file twice changes nothing. The whole import is one transaction.
/// </summary>
public sealed class TransactionImport
{
    /// <summary>Orders per TransactionsRecorded event.</summary>
    public const int OrdersPerEvent = 500;

    private readonly TransactionColumns _m;
    private readonly ImportRun _run;
    private readonly TimeZoneInfo _zone;

    private int _iOrder, _iCustomer, _iAt, _iCurrency, _iSku, _iName, _iCategory, _iQty, _iPrice, _iStatus;
    private string? _lastAtRaw;
    private (DateTime Utc, int Offset)? _lastAt;

    public TransactionImport(TransactionColumns mapping, WorkspaceSettings workspace, ImportRun run)
    {
        _m = mapping;
        _run = run;
        var v = new Validation();
        var zoneId = string.IsNullOrWhiteSpace(mapping.TimeZone) ? workspace.TimeZone : mapping.TimeZone;
        if (!TimeZoneInfo.TryFindSystemTimeZoneById(zoneId, out var zone)) v.Add("header.transactions.time_zone", $"'{zoneId}' is not an IANA time zone");
        if (mapping.FixedCurrency.Length > 0 && !IsCurrency(mapping.FixedCurrency.ToUpperInvariant()))
            v.Add("header.transactions.fixed_currency", "must be an ISO 4217 code such as KRW");
        if (mapping.FixedCurrency.Length == 0 && mapping.Currency.Length == 0)
            v.Add("header.transactions.currency", "name the currency column or set fixed_currency");
        v.ThrowIfInvalid();
        _zone = zone!;
    }

    public async Task<(long OrdersCreated, long ContactsCreated)> RunAsync(NpgsqlDataSource db, CsvReader csv, CancellationToken ct)
    {
        if (!await csv.ReadAsync(ct)) throw new InvalidArgumentException("data", "the file is empty (a header row is required)");
        MapColumns(new ColumnMap(csv.Fields.ToArray()));
        var columns = csv.Fields.Count;

        await using var conn = await db.OpenConnectionAsync(ct);
        await using var tx = await conn.BeginTransactionAsync(ct);
        await conn.ExecuteAsync("""
            CREATE TEMP TABLE import_lines (
                line_no bigint, order_id text, customer_id text, occurred_at timestamptz, utc_offset int,
                currency text, sku text, name text, category text, quantity numeric, unit_price numeric, status text
            ) ON COMMIT DROP
            """, transaction: tx);

        await using (var copy = await conn.BeginBinaryImportAsync(
            "COPY import_lines (line_no, order_id, customer_id, occurred_at, utc_offset, currency, sku, name, category, quantity, unit_price, status) FROM STDIN (FORMAT BINARY)", ct))
        {
            while (await csv.ReadAsync(ct))
            {
                _run.Read();
                var row = csv.Fields;
                if (csv.Error is not null) _run.Reject(csv.Line, "", csv.Error);
                else if (row.Count != columns) _run.Reject(csv.Line, "", $"expected {columns} columns, found {row.Count}");
                else if (Parse(row, csv.Line) is { } line)
                {
                    await copy.StartRowAsync(ct);
                    await copy.WriteAsync(csv.Line, NpgsqlDbType.Bigint, ct);
                    await copy.WriteAsync(line.OrderId, NpgsqlDbType.Text, ct);
                    await WriteNullableAsync(copy, line.CustomerId, ct);
                    await copy.WriteAsync(line.OccurredAt, NpgsqlDbType.TimestampTz, ct);
                    await copy.WriteAsync(line.Offset, NpgsqlDbType.Integer, ct);
                    await copy.WriteAsync(line.Currency, NpgsqlDbType.Text, ct);
                    await copy.WriteAsync(line.Sku, NpgsqlDbType.Text, ct);
                    await WriteNullableAsync(copy, line.Name, ct);
                    await WriteNullableAsync(copy, line.Category, ct);
                    await copy.WriteAsync(line.Quantity, NpgsqlDbType.Numeric, ct);
                    await copy.WriteAsync(line.UnitPrice, NpgsqlDbType.Numeric, ct);
                    await copy.WriteAsync(line.Status, NpgsqlDbType.Text, ct);
                    _run.Accepted();
                }
            }
            await copy.CompleteAsync(ct);
        }
        await _run.FinishReadingAsync(ct);

        var p = new { tenant = _run.Tenant, contactType = Outbox.TypeName<ContactUpserted>(), ordersType = Outbox.TypeName<TransactionsRecorded>(), batch = OrdersPerEvent };
        // Customers seen for the first time become contacts (transactions first).
        var contactsCreated = await conn.ExecuteScalarAsync<long>(new CommandDefinition("""
            WITH created AS (
                INSERT INTO contacts (tenant_id, contact_id, external_id, suppressed)
                SELECT @tenant, gen_random_uuid(), c.customer_id, EXISTS (
                    SELECT 1 FROM suppressions s WHERE s.tenant_id = @tenant
                      AND s.value_hash = sha256(convert_to(@tenant || E'\n' || 'external_id' || E'\n' || c.customer_id, 'UTF8')))
                FROM (SELECT DISTINCT customer_id FROM import_lines WHERE customer_id IS NOT NULL) c
                ON CONFLICT (tenant_id, external_id) DO NOTHING
                RETURNING contact_id, external_id, suppressed, created_at),
            events AS (
                INSERT INTO outbox_messages (message_type, payload)
                SELECT @contactType, jsonb_build_object('tenantId', @tenant, 'contactId', contact_id, 'externalId', external_id,
                    'tags', '[]'::jsonb, 'attributesJson', '{}', 'suppressed', suppressed, 'occurredAt', created_at)
                FROM created)
            SELECT count(*) FROM created
            """, p, tx, commandTimeout: 0, cancellationToken: ct));

        // Orders not recorded before; the first row of an order decides its customer, time and currency.
        await conn.ExecuteAsync(new CommandDefinition("""
            CREATE TEMP TABLE new_orders ON COMMIT DROP AS
            WITH agg AS (
                SELECT DISTINCT ON (order_id) order_id, customer_id, occurred_at, utc_offset, currency, status
                FROM import_lines ORDER BY order_id, line_no),
            totals AS (
                SELECT order_id, sum(quantity * unit_price) AS total FROM import_lines GROUP BY order_id),
            inserted AS (
                INSERT INTO orders (tenant_id, order_id, contact_id, occurred_at, utc_offset_minutes, currency, total, status)
                SELECT @tenant, a.order_id, c.contact_id, a.occurred_at, a.utc_offset, a.currency, t.total, a.status
                FROM agg a JOIN totals t USING (order_id)
                LEFT JOIN contacts c ON c.tenant_id = @tenant AND c.external_id = a.customer_id
                ON CONFLICT (tenant_id, order_id) DO NOTHING
                RETURNING order_id, contact_id, occurred_at, currency, total, status)
            SELECT * FROM inserted
            """, p, tx, commandTimeout: 0, cancellationToken: ct));
        await conn.ExecuteAsync(new CommandDefinition("""
            INSERT INTO order_lines (tenant_id, order_id, line_no, sku, name, category, quantity, unit_price)
            SELECT @tenant, l.order_id, row_number() OVER (PARTITION BY l.order_id ORDER BY l.line_no),
                   l.sku, l.name, l.category, l.quantity, l.unit_price
            FROM import_lines l JOIN new_orders n USING (order_id)
            """, p, tx, commandTimeout: 0, cancellationToken: ct));
        // TransactionsRecorded, batched: what projections need (who, when, how much, which skus and categories).
        var ordersCreated = await conn.ExecuteScalarAsync<long>(new CommandDefinition("""
            WITH items AS (
                SELECT l.order_id, jsonb_agg(DISTINCT l.sku) AS skus,
                       coalesce(jsonb_agg(DISTINCT l.category) FILTER (WHERE l.category IS NOT NULL), '[]') AS categories
                FROM import_lines l JOIN new_orders n USING (order_id) GROUP BY l.order_id),
            docs AS (
                SELECT (row_number() OVER (ORDER BY n.order_id) - 1) / @batch AS grp,
                       jsonb_build_object('contactId', n.contact_id, 'orderId', n.order_id, 'occurredAt', n.occurred_at,
                           'currency', n.currency, 'total', n.total, 'status', n.status,
                           'skus', i.skus, 'categories', i.categories) AS doc
                FROM new_orders n JOIN items i USING (order_id)),
            events AS (
                INSERT INTO outbox_messages (message_type, payload)
                SELECT @ordersType, jsonb_build_object('tenantId', @tenant, 'orders', jsonb_agg(doc)) FROM docs GROUP BY grp)
            SELECT count(*) FROM new_orders
            """, p, tx, commandTimeout: 0, cancellationToken: ct));

        await _run.CompleteAsync(conn, tx, contactsCreated, 0, ordersCreated);
        await tx.CommitAsync(ct);
        return (ordersCreated, contactsCreated);
    }

    private void MapColumns(ColumnMap map)
    {
        var v = new Validation();
        const string m = "header.transactions.";
        _iOrder = map.Find(m + "order_id", _m.OrderId, true, v);
        _iCustomer = map.Find(m + "customer_id", _m.CustomerId, false, v);
        _iAt = map.Find(m + "occurred_at", _m.OccurredAt, true, v);
        _iCurrency = map.Find(m + "currency", _m.Currency, false, v);
        _iSku = map.Find(m + "sku", _m.Sku, true, v);
        _iName = map.Find(m + "name", _m.Name, false, v);
        _iCategory = map.Find(m + "category", _m.Category, false, v);
        _iQty = map.Find(m + "quantity", _m.Quantity, true, v);
        _iPrice = map.Find(m + "unit_price", _m.UnitPrice, true, v);
        _iStatus = map.Find(m + "status", _m.Status, false, v);
        v.ThrowIfInvalid();
    }

    private ParsedLine? Parse(List<string> row, long lineNo)
    {
        var orderId = row[_iOrder];
        if (orderId.Length == 0) return Reject(lineNo, _m.OrderId, "the order id is empty");
        if (orderId.Length > 256) return Reject(lineNo, _m.OrderId, "the order id is longer than 256 characters");
        var sku = row[_iSku];
        if (sku.Length == 0) return Reject(lineNo, _m.Sku, "the sku is empty");
        if (!Decimals.TryParse(row[_iQty], out var qty)) return Reject(lineNo, _m.Quantity, $"'{row[_iQty]}' is not a decimal number");
        if (!Decimals.TryParse(row[_iPrice], out var price)) return Reject(lineNo, _m.UnitPrice, $"'{row[_iPrice]}' is not a decimal number");
        if (price < 0) return Reject(lineNo, _m.UnitPrice, $"the unit price {row[_iPrice]} is negative");
        if (!TryParseTime(row[_iAt], out var at)) return Reject(lineNo, _m.OccurredAt, $"'{row[_iAt]}' is not a time in the format {(_m.DateFormat.Length > 0 ? _m.DateFormat : "ISO 8601")}");

        var currency = _iCurrency >= 0 ? row[_iCurrency].ToUpperInvariant() : _m.FixedCurrency.ToUpperInvariant();
        if (currency.Length == 0) currency = _m.FixedCurrency.ToUpperInvariant();
        if (!IsCurrency(currency)) return Reject(lineNo, _m.Currency, $"'{currency}' is not an ISO 4217 currency code");

        string status;
        if (_iStatus >= 0 && row[_iStatus].Length > 0)
        {
            status = row[_iStatus].ToLowerInvariant() switch
            {
                "completed" or "complete" or "paid" => "completed",
                "cancelled" or "canceled" => "cancelled",
                "refunded" or "returned" => "refunded",
                _ => "",
            };
            if (status.Length == 0) return Reject(lineNo, _m.Status, $"'{row[_iStatus]}' is not completed, cancelled or refunded");
        }
        else
        {
            status = _m.CancelledOrderPrefix.Length > 0 && orderId.StartsWith(_m.CancelledOrderPrefix, StringComparison.Ordinal) ? "cancelled" : "completed";
        }

        string? customer = null;
        if (_iCustomer >= 0 && row[_iCustomer].Length > 0)
        {
            customer = ContactFields.NormaliseExternalId(row[_iCustomer]);
            if (customer.Length > 256) return Reject(lineNo, _m.CustomerId, "the customer id is longer than 256 characters");
        }
        return new ParsedLine(orderId, customer, at.Utc, at.Offset, currency, sku,
            _iName >= 0 && row[_iName].Length > 0 ? row[_iName] : null,
            _iCategory >= 0 && row[_iCategory].Length > 0 ? row[_iCategory] : null,
            qty, price, status);
    }

    private ParsedLine? Reject(long line, string column, string reason)
    {
        _run.Reject(line, column, reason);
        return null;
    }

    /// <summary>Local times are read in the mapping's (else the workspace's) zone; rows of one order repeat the same text, so the last result is reused.</summary>
    private bool TryParseTime(string raw, out (DateTime Utc, int Offset) at)
    {
        if (raw == _lastAtRaw && _lastAt is { } cached)
        {
            at = cached;
            return true;
        }
        at = default;
        if (_m.DateFormat.Length == 0)
        {
            if (!DateTime.TryParse(raw, CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind, out var parsed)) return false;
            if (parsed.Kind == DateTimeKind.Unspecified && !FromLocal(parsed, out at)) return false;
            if (parsed.Kind != DateTimeKind.Unspecified)
            {
                var dto = DateTimeOffset.Parse(raw, CultureInfo.InvariantCulture);
                at = (dto.UtcDateTime, (int)dto.Offset.TotalMinutes);
            }
        }
        else
        {
            if (!DateTime.TryParseExact(raw, _m.DateFormat, CultureInfo.InvariantCulture, DateTimeStyles.None, out var local)) return false;
            if (!FromLocal(local, out at)) return false;
        }
        _lastAtRaw = raw;
        _lastAt = at;
        return true;
    }

    private bool FromLocal(DateTime local, out (DateTime Utc, int Offset) at)
    {
        at = default;
        local = DateTime.SpecifyKind(local, DateTimeKind.Unspecified);
        if (_zone.IsInvalidTime(local)) return false; // a time skipped by a daylight-saving change
        var utc = TimeZoneInfo.ConvertTimeToUtc(local, _zone);
        at = (utc, (int)_zone.GetUtcOffset(utc).TotalMinutes);
        return true;
    }

    private static bool IsCurrency(string c) => c.Length == 3 && c.All(char.IsAsciiLetterUpper);

    private static Task WriteNullableAsync(NpgsqlBinaryImporter copy, string? value, CancellationToken ct) =>
        value is null ? copy.WriteNullAsync(ct) : copy.WriteAsync(value, NpgsqlDbType.Text, ct);

    private sealed record ParsedLine(string OrderId, string? CustomerId, DateTime OccurredAt, int Offset, string Currency,
        string Sku, string? Name, string? Category, decimal Quantity, decimal UnitPrice, string Status);
}
