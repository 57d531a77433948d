using Crm.BuildingBlocks.Data;
using System.Buffers;
using System.Buffers.Text;
using System.Text;
using System.Text.Json;
using System.Globalization;
using System.Threading.Channels;
using Crm.BuildingBlocks.Errors;
using Crm.BuildingBlocks.Outbox;
using Crm.Contacts.Features.Contacts;
using Crm.Contracts.Contacts;
using Crm.Contacts.V1;
using Dapper;
using Npgsql;

namespace Crm.Contacts.Features.Imports;

/// <summary>
/// Line-item CSV (one row per item, as POS and shop exports write them) → orders, in one transaction
/// (the contacts of new customers excepted, see stage 2).
///
/// Three stages, each handing batches to the next through a bounded channel, so memory stays flat
/// whatever the file size:
/// 1. the parser folds each run of consecutive rows of one order into a fragment (its first row's
///    facts, the total, the items);
/// 2. the resolver, on a connection of its own, finds which orders were recorded before this import
///    (committed, so it sees them) and finds or creates the contact of each customer of the others
///    (transactions first). Contacts are committed as they are created, like those of
///    UpsertContact: an import that fails later leaves them, and a retry finds them;
/// 3. the writer, in the import's transaction, binary-COPYs the new orders straight into `orders`
///    and writes their TransactionsRecorded events to the outbox.
/// So PostgreSQL probes and creates one batch's contacts while it ingests the previous batch's
/// orders. An order recorded before is skipped, so importing the same file twice changes nothing;
/// an order whose rows were not consecutive in the file gets the later items appended (and an
/// event with its new state).
/// </summary>
public sealed class TransactionImport
{
    /// <summary>Orders per TransactionsRecorded event.</summary>
    public const int OrdersPerEvent = 500;
    /// <summary>
    /// Rows per batch. Each batch costs a fixed round of statements (probe, customers, COPY, outbox);
    /// at 16,384 rows that round was a third of the database's time for a million rows. At 65,536
    /// a batch takes some tens of MiB, and at most five are in memory: one in each stage and one
    /// queued before each of the last two.
    /// </summary>
    private const int BatchRows = 65_536;

    private readonly TransactionColumns _m;
    private long _ordersCreated, _guestOrdersCreated;
    /// <summary>The writer's COPY buffer, reused batch after batch (it grows to the largest batch once).</summary>
    private readonly PgBinaryCopy _copy = new(1 << 22);
    private readonly ImportRun _run;
    private readonly TimeZoneInfo _zone;
    private readonly string _fixedCurrency;

    private int _iOrder, _iCustomer, _iAt, _iCurrency, _iSku, _iName, _iCategory, _iQty, _iPrice, _iStatus;
    private readonly BytesCache _orderIds = new();
    /// <summary>The order ids this import has written (a false positive only costs a probe).</summary>
    private readonly OrderIdFilter _written = new();
    /// <summary>Customer id → contact id for customers this import has resolved (see <see cref="ResolveAsync"/>).</summary>
    private readonly Dictionary<string, Guid> _knownContacts = new(StringComparer.Ordinal);
    private const int KnownContactsLimit = 200_000;
    private readonly BytesCache _customers = new(ContactFields.NormaliseExternalId);
    private readonly BytesCache _currencies = new(s => s.ToUpperInvariant());
    private readonly BytesCache _times = new();
    private (DateTime Utc, int Offset) _lastTime;
    private string? _lastTimeRaw;

    public TransactionImport(TransactionColumns mapping, Workspaces.WorkspaceSettings workspace, ImportRun run)
    {
        _m = mapping;
        _run = run;
        _fixedCurrency = mapping.FixedCurrency.Trim().ToUpperInvariant();
        var v = new Validation();
        var zoneId = string.IsNullOrWhiteSpace(mapping.TimeZone) ? workspace.TimeZone : mapping.TimeZone;
        if (!TimeZoneInfo.TryFindSystemTimeZoneById(zoneId, out var zone)) v.Add("header.transactions.time_zone", $"'{zoneId}' is not an IANA time zone");
        if (_fixedCurrency.Length > 0 && !IsCurrency(_fixedCurrency)) v.Add("header.transactions.fixed_currency", "must be an ISO 4217 code such as KRW");
        if (_fixedCurrency.Length == 0 && mapping.Currency.Length == 0) v.Add("header.transactions.currency", "name the currency column or set fixed_currency");
        v.ThrowIfInvalid();
        _zone = zone!;
    }

    public async Task<(long OrdersCreated, long ContactsCreated)> RunAsync(TenantDb db, CsvReader csv, CancellationToken ct)
    {
        if (!await csv.ReadAsync(ct)) throw new InvalidArgumentException("data", "the file is empty (a header row is required)");
        MapColumns(new ColumnMap(csv.ToStrings()));

        await using var scope = await db.BeginAsync(_run.Tenant, ct);
        var (conn, tx) = scope;
        _direct = await conn.ExecuteScalarAsync<bool>(CanCopyDirectly, transaction: tx);
        if (!_direct) await conn.ExecuteAsync(CreateStaging, transaction: tx);
        var parsed = System.Threading.Channels.Channel.CreateBounded<Batch>(new BoundedChannelOptions(1) { SingleReader = true, SingleWriter = true });
        var resolved = System.Threading.Channels.Channel.CreateBounded<Batch>(new BoundedChannelOptions(1) { SingleReader = true, SingleWriter = true });
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var parser = Task.Run(() => ParseAsync(csv, parsed.Writer, stop.Token), stop.Token);
        var resolver = Task.Run(() => ResolveAsync(db, parsed.Reader, resolved.Writer, stop.Token), stop.Token);
        try
        {
            // A stage's failure reaches the writer through the channels and is thrown here.
            await foreach (var batch in resolved.Reader.ReadAllAsync(ct))
            {
                await WriteBatchAsync(conn, tx, batch, ct);
                batch.Reset();
                _spare.Enqueue(batch);
            }
        }
        finally
        {
            // Whatever ended the writer, the stages are stopped and waited for, so none of them is
            // still creating contacts once the import is reported finished or failed.
            await stop.CancelAsync();
            try
            {
                await Task.WhenAll(parser, resolver);
            }
            catch (Exception ex) when (ex is OperationCanceledException || stop.IsCancellationRequested)
            {
                // Stopped, or failed with what the writer already threw.
            }
        }
        await _run.FinishReadingAsync(ct);
        await _run.CompleteAsync(conn, tx, _run.ContactsCreatedOutsideTransaction, 0, _ordersCreated, _guestOrdersCreated);
        await tx.CommitAsync(ct);
        return (_ordersCreated, _run.ContactsCreatedOutsideTransaction);
    }

    /// <summary>
    /// Batches the writer is done with: their buffers (megabytes each) are reused rather than
    /// allocated again for every 65,536 rows and zeroed by the runtime and the kernel.
    /// </summary>
    private readonly System.Collections.Concurrent.ConcurrentQueue<Batch> _spare = new();

    private Batch NextBatch() => _spare.TryDequeue(out var b) ? b : new Batch();

    private async Task ParseAsync(CsvReader csv, ChannelWriter<Batch> output, CancellationToken ct)
    {
        try
        {
            var columns = csv.FieldCount;
            var batch = NextBatch();
            Fragment? run = null;
            while (await csv.ReadAsync(ct))
            {
                _run.Read();
                if (csv.Error is not null) _run.Reject(csv.Line, "", csv.Error);
                else if (csv.FieldCount != columns) _run.Reject(csv.Line, "", $"expected {columns} columns, found {csv.FieldCount}");
                else if (Parse(csv) is { } item)
                {
                    _run.Accepted();
                    // Rows of one order usually follow each other: one fragment per run.
                    if (run is null || !ReferenceEquals(run.OrderId, item.OrderId))
                    {
                        run = batch.StartFragment(item.OrderId, item.CustomerId, item.At.Utc, item.At.Offset, item.Currency, item.Status);
                    }
                    batch.AddLine(run, csv.Span(_iSku), _iName >= 0 ? csv.Span(_iName) : default, _iCategory >= 0 ? csv.Span(_iCategory) : default,
                        item.Quantity, csv.Span(_iQty), item.UnitPrice, csv.Span(_iPrice));
                    if (++batch.Rows == BatchRows)
                    {
                        await output.WriteAsync(batch, ct);
                        batch = NextBatch();
                        run = null;
                    }
                }
            }
            if (batch.Rows > 0) await output.WriteAsync(batch, ct);
            output.Complete();
        }
        catch (Exception ex)
        {
            output.Complete(ex);
            throw;
        }
    }

    private async Task WriteBatchAsync(NpgsqlConnection conn, NpgsqlTransaction tx, Batch batch, CancellationToken ct)
    {
        // Orders recorded before this import were found by the resolver. Of the others, those an
        // earlier batch of this import may have written (its order ids are in a Bloom filter) are
        // probed in this transaction: written before (append the items) or new after all.
        var maybeOurs = batch.Orders.Where(f => !f.RecordedBefore && _written.MightContain(f.OrderId)).Select(f => f.OrderId).ToArray();
        var known = maybeOurs.Length == 0 ? new Dictionary<string, bool>() : await ProbeOrdersAsync(conn, tx, maybeOurs, ct);
        var fresh = batch.Orders.Where(f => !f.RecordedBefore && !known.ContainsKey(f.OrderId)).ToList();
        var appended = batch.Orders.Where(f => known.TryGetValue(f.OrderId, out var ours) && ours).ToList();
        foreach (var f in fresh) _written.Add(f.OrderId);

        var copy = _copy;
        copy.Reset();
        foreach (var f in fresh)
        {
            copy.StartRow(10);
            copy.Text(_run.Tenant);
            copy.Text(f.OrderId);
            if (batch.ContactOf(f) is { } id) copy.Uuid(id); else copy.Null();
            copy.TimestampTz(f.OccurredAt);
            copy.Int4(f.Offset);
            copy.Text(f.Currency);
            copy.Numeric(f.Total);
            copy.Text(f.Status);
            batch.WriteLinesJson(copy, f);
            copy.Uuid(_run.ImportId);
        }
        // PostgreSQL ingests the orders while this thread turns them into their events.
        var copying = fresh.Count > 0 ? CopyOrdersAsync(conn, copy.Finish(), _direct, ct) : Task.CompletedTask;
        var events = _events;
        events.Reset();
        try
        {
            foreach (var chunk in fresh.Chunk(OrdersPerEvent))
            {
                events.StartRow(2);
                events.Text(EventType);
                events.Utf8(batch.EventPayload(_run.Tenant, chunk));
            }
        }
        finally
        {
            await copying;
        }
        _ordersCreated += fresh.Count;
        _guestOrdersCreated += fresh.Count(f => f.CustomerId is null);
        if (fresh.Count > 0) await EnqueueEventsAsync(conn, events.Finish(), ct);

        // An order whose items were not all consecutive gets the later ones appended, and is announced
        // again with its whole state (total, skus and categories of all its items).
        var appendedEvents = new List<RecordedOrder>(appended.Count);
        foreach (var f in appended)
        {
            var o = await conn.QuerySingleAsync<(Guid? ContactId, string OrderId, DateTime OccurredAt, string Currency, decimal Total, string Status,
                string Lines)>(new CommandDefinition("""
                UPDATE orders SET lines = (lines::jsonb || @lines::jsonb)::json, total = total + @total
                WHERE tenant_id = @tenant AND order_id = @orderId
                RETURNING contact_id, order_id, occurred_at, currency, total, status, lines::text
                """, new { tenant = _run.Tenant, orderId = f.OrderId, lines = batch.LinesJsonString(f), total = f.Total }, tx, cancellationToken: ct));
            appendedEvents.Add(Transactions.OrderLinesJson.ToRecorded(o.ContactId, o.OrderId, o.OccurredAt, o.Currency, o.Total, o.Status, o.Lines));
        }
        await Outbox.EnqueueManyAsync(conn, tx, appendedEvents.Chunk(OrdersPerEvent).Select(c => new TransactionsRecorded(_run.Tenant, c)));
    }

    /// <summary>
    /// PostgreSQL refuses COPY FROM into a table with row-level security for a role it applies to. When the
    /// migrations could create <c>crm_bulk_orders</c> (NOLOGIN, BYPASSRLS, INSERT on orders and nothing else;
    /// migration 0018) and made the service's role a member, the batch is COPYed straight into `orders` under
    /// SET LOCAL ROLE for that statement alone: every row's tenant_id is the import's own tenant, written above
    /// from the transaction's tenant, never from the file. Otherwise it goes through a staging table: COPYed
    /// into a temporary table (private to this session, no policies, no indexes, no WAL) and moved into
    /// `orders` by one INSERT … SELECT, where the policies' WITH CHECK applies to every row. The staging table
    /// holds one batch at a time, so it stays within the session's temp buffers.
    /// </summary>
    private static async Task CopyOrdersAsync(NpgsqlConnection conn, ReadOnlyMemory<byte> rows, bool direct, CancellationToken ct)
    {
        if (direct)
        {
            await using (var role = new NpgsqlCommand($"SET LOCAL ROLE {BulkRole}", conn))
                await role.ExecuteNonQueryAsync(ct);
            await using (var stream = await conn.BeginRawBinaryCopyAsync($"COPY orders ({OrderColumns}) FROM STDIN (FORMAT BINARY)", ct))
                await stream.WriteAsync(rows, ct);
            await using var back = new NpgsqlCommand("SET LOCAL ROLE NONE", conn);
            await back.ExecuteNonQueryAsync(ct);
            return;
        }
        await using (var truncate = new NpgsqlCommand("TRUNCATE import_orders", conn))
            await truncate.ExecuteNonQueryAsync(ct);
        await using (var stream = await conn.BeginRawBinaryCopyAsync(
            $"COPY import_orders ({OrderColumns}) FROM STDIN (FORMAT BINARY)", ct))
            await stream.WriteAsync(rows, ct);
        await using var insert = new NpgsqlCommand($"INSERT INTO orders ({OrderColumns}) SELECT {OrderColumns} FROM import_orders", conn);
        await insert.ExecuteNonQueryAsync(ct);
    }

    /// <summary>
    /// The batch's TransactionsRecorded events go into the outbox by binary COPY of the payloads' UTF-8 bytes
    /// as the writer rendered them (a batch's events are megabytes): no string is made of them, and
    /// PostgreSQL receives no array to unpack. The outbox has no tenant column, so no policy applies; its
    /// trigger wakes the relay at commit as for any insert.
    /// </summary>
    private static async Task EnqueueEventsAsync(NpgsqlConnection conn, ReadOnlyMemory<byte> rows, CancellationToken ct)
    {
        await using var stream = await conn.BeginRawBinaryCopyAsync("COPY outbox_messages (message_type, payload) FROM STDIN (FORMAT BINARY)", ct);
        await stream.WriteAsync(rows, ct);
    }

    private static readonly string EventType = Outbox.TypeName<TransactionsRecorded>();

    /// <summary>The writer's outbox COPY buffer, reused batch after batch.</summary>
    private readonly PgBinaryCopy _events = new(1 << 22);

    private const string BulkRole = "crm_bulk_orders";

    /// <summary>Whether this connection's role may switch to <see cref="BulkRole"/> and it may insert into orders without the policies.</summary>
    private const string CanCopyDirectly = $"""
        SELECT EXISTS (SELECT FROM pg_roles r WHERE r.rolname = '{BulkRole}' AND r.rolbypassrls
            AND pg_has_role(current_user, r.oid, 'MEMBER') AND has_table_privilege(r.oid, 'orders', 'INSERT'))
        """;

    /// <summary>Set per import: the batches go straight into `orders` (see <see cref="CopyOrdersAsync"/>).</summary>
    private bool _direct;

    private const string OrderColumns = "tenant_id, order_id, contact_id, occurred_at, utc_offset_minutes, currency, total, status, lines, import_id";

    /// <summary>
    /// The staging table of <see cref="CopyOrdersAsync"/>, dropped at the end of the import's
    /// transaction. Its lines are compressed as orders' are, so a large order's items move into
    /// `orders` as they are instead of being compressed twice.
    /// </summary>
    private const string CreateStaging = """
        CREATE TEMP TABLE import_orders (
            tenant_id text, order_id text, contact_id uuid, occurred_at timestamptz, utc_offset_minutes int,
            currency text, total numeric(20,4), status text, lines json COMPRESSION lz4, import_id uuid
        ) ON COMMIT DROP
        """;

    /// <summary>
    /// Which of the order ids exist, and whether this import wrote them (only the import's own
    /// transaction sees those). Probed id by id through the primary key (LIMIT 1 keeps the planner
    /// from flattening the subquery): a plain join read every order of the tenant into a hash table,
    /// once per batch, while the import was growing that very table.
    /// </summary>
    private async Task<Dictionary<string, bool>> ProbeOrdersAsync(NpgsqlConnection conn, NpgsqlTransaction? tx, string[] ids, CancellationToken ct) =>
        (await conn.QueryAsync<(string OrderId, bool Ours)>(new CommandDefinition("""
            SELECT i.order_id, o.ours
            FROM unnest(@ids) AS i(order_id)
            CROSS JOIN LATERAL (
                SELECT import_id IS NOT DISTINCT FROM @importId AS ours FROM orders
                WHERE tenant_id = @tenant AND order_id = i.order_id LIMIT 1) o
            """, new { tenant = _run.Tenant, importId = _run.ImportId, ids }, tx, cancellationToken: ct)))
        .ToDictionary(k => k.OrderId, k => k.Ours, StringComparer.Ordinal);

    /// <summary>
    /// Which of the batch's order ids the tenant's committed orders hold. A shop's order ids mostly grow, so
    /// the batch's ids usually span a stretch of the primary key that holds nothing yet: one range scan from
    /// the smallest to the largest id answers for the whole batch (probing id by id was 6,500 index descents
    /// a batch, and as `orders` grew under stale statistics the planner turned each into a bitmap scan).
    /// When the stretch holds more orders than the batch has (ids interleaved with earlier ones), the ids
    /// are probed one by one. The bounds are taken in the column's collation ("C"), as the index orders them.
    /// </summary>
    private async Task<IEnumerable<string>> RecordedBeforeAsync(NpgsqlConnection conn, string[] ids, CancellationToken ct)
    {
        var limit = ids.Length + 1;
        var inRange = (await conn.QueryAsync<string>(new CommandDefinition("""
            SELECT order_id FROM orders
            WHERE tenant_id = @tenant
              AND order_id >= (SELECT min(i COLLATE "C") FROM unnest(@ids) AS i)
              AND order_id <= (SELECT max(i COLLATE "C") FROM unnest(@ids) AS i)
            LIMIT @limit
            """, new { tenant = _run.Tenant, ids, limit }, cancellationToken: ct))).AsList();
        if (inRange.Count < limit)
        {
            var batch = ids.ToHashSet(StringComparer.Ordinal);
            return inRange.Where(batch.Contains);
        }
        return (await ProbeOrdersAsync(conn, null, ids, ct)).Keys;
    }

    /// <summary>
    /// Stage 2: which of each batch's orders were recorded before this import (skipped), and the
    /// contact of every customer of the others, created when the customer is new.
    /// Customers already resolved by this import are remembered (a bounded map), so later batches
    /// mostly ask the database about customers it has not seen yet.
    /// </summary>
    private async Task ResolveAsync(TenantDb db, ChannelReader<Batch> input, ChannelWriter<Batch> output, CancellationToken ct)
    {
        try
        {
            await foreach (var batch in input.ReadAllAsync(ct))
            {
                // A transaction per batch: the contacts it creates are committed before the writer
                // records their orders.
                await using var scope = await db.BeginAsync(_run.Tenant, ct);
                var conn = scope.Connection;
                // One fragment per order within the batch.
                var orders = new Dictionary<string, Fragment>(batch.Fragments.Count, StringComparer.Ordinal);
                foreach (var f in batch.Fragments)
                {
                    if (orders.TryGetValue(f.OrderId, out var first)) first.Append(f);
                    else orders.Add(f.OrderId, f);
                }
                batch.Orders.AddRange(orders.Values);
                // Recorded before this import began (committed, so visible here): skipped, and their
                // customers left alone.
                foreach (var orderId in await RecordedBeforeAsync(conn, [.. orders.Keys], ct))
                    orders[orderId].RecordedBefore = true;

                long created = 0;
                var unknown = new HashSet<string>(StringComparer.Ordinal);
                foreach (var f in batch.Orders)
                {
                    if (f.RecordedBefore || f.CustomerId is not { } c || batch.Contacts.ContainsKey(c)) continue;
                    if (_knownContacts.TryGetValue(c, out var known)) batch.Contacts[c] = known;
                    else unknown.Add(c);
                }
                if (unknown.Count > 0)
                {
                    (var ids, created) = await PurchaseContacts.EnsureAsync(conn, scope.Transaction, _run.Suppressions, _run.Tenant, [.. unknown], ct, mostlyNew: true);
                    if (_knownContacts.Count + ids.Count > KnownContactsLimit) _knownContacts.Clear();
                    foreach (var (externalId, contactId) in ids) batch.Contacts[externalId] = _knownContacts[externalId] = contactId;
                }
                await scope.CommitAsync(ct);
                _run.ContactsCommitted(created);
                await output.WriteAsync(batch, ct);
            }
            output.Complete();
        }
        catch (Exception ex)
        {
            output.Complete(ex);
            throw;
        }
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

    private ParsedRow? Parse(CsvReader csv)
    {
        var lineNo = csv.Line;
        var orderBytes = csv.Span(_iOrder);
        if (orderBytes.IsEmpty) return Reject(lineNo, _m.OrderId, "the order id is empty");
        if (orderBytes.Length > 256) return Reject(lineNo, _m.OrderId, "the order id is longer than 256 characters");
        var orderId = _orderIds.Get(orderBytes);
        if (csv.Span(_iSku).IsEmpty) return Reject(lineNo, _m.Sku, "the sku is empty");
        if (!System.Text.Unicode.Utf8.IsValid(csv.Span(_iSku))) return Reject(lineNo, _m.Sku, "the text is not valid UTF-8");
        if (_iName >= 0 && !System.Text.Unicode.Utf8.IsValid(csv.Span(_iName))) return Reject(lineNo, _m.Name, "the text is not valid UTF-8");
        if (_iCategory >= 0 && !System.Text.Unicode.Utf8.IsValid(csv.Span(_iCategory))) return Reject(lineNo, _m.Category, "the text is not valid UTF-8");
        if (!TryDecimal(csv.Span(_iQty), out var qty)) return Reject(lineNo, _m.Quantity, $"'{csv.String(_iQty)}' is not a decimal number");
        if (!TryDecimal(csv.Span(_iPrice), out var price)) return Reject(lineNo, _m.UnitPrice, $"'{csv.String(_iPrice)}' is not a decimal number");
        if (price < 0) return Reject(lineNo, _m.UnitPrice, $"the unit price {csv.String(_iPrice)} is negative");
        var timeRaw = _times.Get(csv.Span(_iAt));
        if (!TryParseTime(timeRaw, out var at))
            return Reject(lineNo, _m.OccurredAt, $"'{timeRaw}' is not a time in the format {(_m.DateFormat.Length > 0 ? _m.DateFormat : "ISO 8601")}");

        var currency = _iCurrency >= 0 && !csv.Span(_iCurrency).IsEmpty ? _currencies.Get(csv.Span(_iCurrency)) : _fixedCurrency;
        if (!IsCurrency(currency)) return Reject(lineNo, _m.Currency, $"'{currency}' is not an ISO 4217 currency code");

        string status;
        if (_iStatus >= 0 && !csv.Span(_iStatus).IsEmpty)
        {
            status = csv.String(_iStatus).ToLowerInvariant() switch
            {
                "completed" or "complete" or "paid" => "completed",
                "cancelled" or "canceled" => "cancelled",
                "refunded" or "returned" => "refunded",
                _ => "",
            };
            if (status.Length == 0) return Reject(lineNo, _m.Status, $"'{csv.String(_iStatus)}' is not completed, cancelled or refunded");
        }
        else
        {
            status = _m.CancelledOrderPrefix.Length > 0 && orderId.StartsWith(_m.CancelledOrderPrefix, StringComparison.Ordinal) ? "cancelled" : "completed";
        }

        string? customer = null;
        if (_iCustomer >= 0 && !csv.Span(_iCustomer).IsEmpty)
        {
            customer = _customers.Get(csv.Span(_iCustomer));
            if (customer.Length > 256) return Reject(lineNo, _m.CustomerId, "the customer id is longer than 256 characters");
        }
        return new ParsedRow(orderId, customer, at, currency, status, qty, price);
    }

    private ParsedRow? Reject(long line, string column, string reason)
    {
        _run.Reject(line, column, reason);
        return null;
    }

    private static bool TryDecimal(ReadOnlySpan<byte> s, out decimal value)
    {
        if (Utf8Parser.TryParse(s, out value, out var consumed) && consumed == s.Length) return true;
        // Slow path for what Utf8Parser does not take (a leading '+', surrounding spaces).
        return Decimals.TryParse(System.Text.Encoding.UTF8.GetString(s), out value);
    }

    /// <summary>Local times are read in the mapping's (else the workspace's) zone; rows of one order repeat the same text.</summary>
    private bool TryParseTime(string raw, out (DateTime Utc, int Offset) at)
    {
        if (ReferenceEquals(raw, _lastTimeRaw))
        {
            at = _lastTime;
            return true;
        }
        at = default;
        if (_m.DateFormat.Length == 0)
        {
            // ISO 8601: with an offset ("Z", "+09:00") it says its own zone; without one it is local.
            var hasOffset = raw.Length > 10 && (raw.EndsWith('Z') || raw.IndexOf('+', 10) > 0 || raw.IndexOf('-', 10) > 0);
            if (hasOffset)
            {
                if (!DateTimeOffset.TryParse(raw, CultureInfo.InvariantCulture, DateTimeStyles.None, out var dto)) return false;
                at = (dto.UtcDateTime, (int)dto.Offset.TotalMinutes);
            }
            else if (!DateTime.TryParse(raw, CultureInfo.InvariantCulture, DateTimeStyles.None, out var local) || !FromLocal(local, out at))
            {
                return false;
            }
        }
        else if (!DateTime.TryParseExact(raw, _m.DateFormat, CultureInfo.InvariantCulture, DateTimeStyles.None, out var local) || !FromLocal(local, out at))
        {
            return false;
        }
        _lastTimeRaw = raw;
        _lastTime = at;
        return true;
    }

    private bool FromLocal(DateTime local, out (DateTime Utc, int Offset) at)
    {
        at = default;
        local = DateTime.SpecifyKind(local, DateTimeKind.Unspecified);
        if (_zone.IsInvalidTime(local)) return false; // skipped by a daylight-saving change
        var utc = TimeZoneInfo.ConvertTimeToUtc(local, _zone);
        at = (utc, (int)_zone.GetUtcOffset(utc).TotalMinutes);
        return true;
    }

    private static bool IsCurrency(string c) => c.Length == 3 && char.IsAsciiLetterUpper(c[0]) && char.IsAsciiLetterUpper(c[1]) && char.IsAsciiLetterUpper(c[2]);

    /// <summary>A valid row: the order facts a new fragment takes from its first row, and the item's amounts.</summary>
    private readonly record struct ParsedRow(string OrderId, string? CustomerId, (DateTime Utc, int Offset) At, string Currency, string Status,
        decimal Quantity, decimal UnitPrice);

    /// <summary>
    /// Up to <see cref="BatchRows"/> rows on their way to the database. The items of all its
    /// fragments are written as JSON into one arena (fragments keep offsets), so a batch is a few
    /// large arrays rather than a million small objects for the garbage collector to move.
    /// </summary>
    private sealed class Batch
    {
        private readonly ArrayBufferWriter<byte> _arena = new(BatchRows * 64);
        private readonly List<(int Start, int Length)> _skus = new(BatchRows);
        private readonly List<(int Start, int Length)> _categories = [];
        /// <summary>
        /// The items as TransactionsRecorded's lines ({"sku":…,"category":…,"quantity":…,"amount":…}), written by
        /// the parser as it reads them, so the writer (which turns orders into events while PostgreSQL ingests them)
        /// only copies each order's span; fragments keep offsets.
        /// </summary>
        private readonly ArrayBufferWriter<byte> _eventLines = new(BatchRows * 48);
        private readonly ArrayBufferWriter<byte> _scratch = new();

        public int Rows { get; set; }

        public void Reset()
        {
            _arena.ResetWrittenCount();
            _skus.Clear();
            _categories.Clear();
            _eventLines.ResetWrittenCount();
            Rows = 0;
            Fragments.Clear();
            Contacts.Clear();
            Orders.Clear();
        }
        public List<Fragment> Fragments { get; } = [];

        /// <summary>The contact of each customer of the batch's orders not recorded before (filled in by the resolver).</summary>
        public Dictionary<string, Guid> Contacts { get; } = new(StringComparer.Ordinal);

        /// <summary>The first fragment of each order, later runs of the order appended to it (filled in by the resolver).</summary>
        public List<Fragment> Orders { get; } = [];

        /// <summary>The order's contact (null for a guest order); only for orders not recorded before.</summary>
        public Guid? ContactOf(Fragment f) => f.CustomerId is null ? null : Contacts[f.CustomerId];

        public Fragment StartFragment(string orderId, string? customerId, DateTime occurredAt, int offset, string currency, string status)
        {
            var f = new Fragment(orderId, customerId, occurredAt, offset, currency, status, _arena.WrittenCount, _skus.Count, _categories.Count, _eventLines.WrittenCount);
            Fragments.Add(f);
            return f;
        }

        /// <summary>Appends an item of the current fragment (the last one started).</summary>
        public void AddLine(Fragment f, ReadOnlySpan<byte> sku, ReadOnlySpan<byte> name, ReadOnlySpan<byte> category,
            decimal quantity, ReadOnlySpan<byte> quantityText, decimal unitPrice, ReadOnlySpan<byte> unitPriceText)
        {
            if (f.JsonLength > 0) _arena.Write(","u8);
            // [sku, name, category, quantity, unit_price] (OrderLinesJson's form).
            _arena.Write("["u8);
            var skuStart = _arena.WrittenCount + 1;
            Utf8Writers.JsonString(_arena, sku);
            var skuLength = _arena.WrittenCount - 1 - skuStart;
            _arena.Write(","u8);
            if (name.IsEmpty) _arena.Write("null"u8); else Utf8Writers.JsonString(_arena, name);
            _arena.Write(","u8);
            var categoryStart = _arena.WrittenCount + 1;
            if (category.IsEmpty) _arena.Write("null"u8); else Utf8Writers.JsonString(_arena, category);
            var categoryLength = _arena.WrittenCount - 1 - categoryStart;
            _arena.Write(","u8);
            Utf8Writers.Number(_arena, quantity, quantityText);
            _arena.Write(","u8);
            Utf8Writers.Number(_arena, unitPrice, unitPriceText);
            _arena.Write("]"u8);
            f.JsonLength = _arena.WrittenCount - f.JsonStart;
            var amount = quantity * unitPrice;
            f.Total += amount;
            if (f.LinesLength > 0) _eventLines.Write(","u8);
            _eventLines.Write("{\"sku\":"u8);
            _eventLines.Write(_arena.WrittenSpan.Slice(skuStart - 1, skuLength + 2)); // with its quotes
            if (!category.IsEmpty)
            {
                _eventLines.Write(",\"category\":"u8);
                _eventLines.Write(_arena.WrittenSpan.Slice(categoryStart - 1, categoryLength + 2));
            }
            _eventLines.Write(",\"quantity\":"u8);
            Utf8Writers.Number(_eventLines, quantity, quantityText);
            _eventLines.Write(",\"amount\":"u8);
            Utf8Writers.Number(_eventLines, amount);
            _eventLines.Write("}"u8);
            f.LinesLength = _eventLines.WrittenCount - f.LinesStart;
            if (!Contains(_skus, f.SkuStart, skuStart, skuLength)) _skus.Add((skuStart, skuLength));
            f.SkuCount = _skus.Count - f.SkuStart;
            if (!category.IsEmpty && !Contains(_categories, f.CategoryStart, categoryStart, categoryLength)) _categories.Add((categoryStart, categoryLength));
            f.CategoryCount = _categories.Count - f.CategoryStart;
        }

        /// <summary>The items of a fragment and of the later runs appended to it, as one JSON array.</summary>
        public void WriteLinesJson(PgBinaryCopy copy, Fragment f)
        {
            var length = 1;
            for (var run = f; run is not null; run = run.Next) length += run.JsonLength + 1;
            copy.Json(length, "["u8);
            for (var run = f; run is not null; run = run.Next)
            {
                copy.Append(_arena.WrittenSpan.Slice(run.JsonStart, run.JsonLength));
                copy.Append(run.Next is null ? "]"u8 : ","u8);
            }
        }

        public string LinesJsonString(Fragment f)
        {
            var parts = new List<string>();
            for (var run = f; run is not null; run = run.Next)
                parts.Add(Encoding.UTF8.GetString(_arena.WrittenSpan.Slice(run.JsonStart, run.JsonLength)));
            return "[" + string.Join(",", parts) + "]";
        }

        /// <summary>
        /// The TransactionsRecorded payload of new orders, written straight from the arena: the skus
        /// and categories are already JSON strings there, in the form the outbox's serializer writes
        /// (web defaults: camelCase names, ISO times), so consumers read it as any other event.
        /// </summary>
        public ReadOnlySpan<byte> EventPayload(string tenant, IEnumerable<Fragment> orders)
        {
            _payload.ResetWrittenCount();
            using (var w = new Utf8JsonWriter(_payload, PayloadOptions))
            {
                w.WriteStartObject();
                w.WriteString("tenantId"u8, tenant);
                w.WriteStartArray("orders"u8);
                foreach (var f in orders)
                {
                    w.WriteStartObject();
                    if (ContactOf(f) is { } contactId) w.WriteString("contactId"u8, contactId); else w.WriteNull("contactId"u8);
                    w.WriteString("orderId"u8, f.OrderId);
                    w.WriteString("occurredAt"u8, new DateTimeOffset(f.OccurredAt, TimeSpan.Zero));
                    w.WriteString("currency"u8, f.Currency);
                    w.WriteNumber("total"u8, f.Total);
                    w.WriteString("status"u8, f.Status);
                    w.WriteStartArray("skus"u8);
                    WriteDistinct(w, f, _skus, r => (r.SkuStart, r.SkuCount));
                    w.WriteEndArray();
                    w.WriteStartArray("categories"u8);
                    WriteDistinct(w, f, _categories, r => (r.CategoryStart, r.CategoryCount));
                    w.WriteEndArray();
                    // The lines as the parser rendered them, the runs of the order joined into one array.
                    _scratch.ResetWrittenCount();
                    _scratch.Write("["u8);
                    for (var run = f; run is not null; run = run.Next)
                    {
                        if (run != f && run.LinesLength > 0 && _scratch.WrittenCount > 1) _scratch.Write(","u8);
                        _scratch.Write(_eventLines.WrittenSpan.Slice(run.LinesStart, run.LinesLength));
                    }
                    _scratch.Write("]"u8);
                    w.WritePropertyName("lines"u8);
                    w.WriteRawValue(_scratch.WrittenSpan, skipInputValidation: true);
                    w.WriteEndObject();
                }
                w.WriteEndArray();
                w.WriteEndObject();
            }
            return _payload.WrittenSpan;
        }

        private static readonly JsonWriterOptions PayloadOptions = new() { SkipValidation = true };
        private readonly ArrayBufferWriter<byte> _payload = new();

        /// <summary>The strings of an order's runs, each once (a later run may repeat an earlier run's).</summary>
        private void WriteDistinct(Utf8JsonWriter w, Fragment f, List<(int Start, int Length)> refs, Func<Fragment, (int Start, int Count)> range)
        {
            for (var run = f; run is not null; run = run.Next)
            {
                var (start, count) = range(run);
                for (var i = start; i < start + count; i++)
                {
                    var (s, length) = refs[i];
                    if (!InEarlierRun(f, run, refs, range, s, length))
                        w.WriteRawValue(_arena.WrittenSpan.Slice(s - 1, length + 2), skipInputValidation: true); // with its quotes
                }
            }
        }

        private bool InEarlierRun(Fragment first, Fragment run, List<(int Start, int Length)> refs, Func<Fragment, (int Start, int Count)> range,
            int start, int length)
        {
            for (var earlier = first; earlier != run; earlier = earlier.Next!)
            {
                var (from, count) = range(earlier);
                if (Contains(refs, from, from + count, start, length)) return true;
            }
            return false;
        }

        private bool Contains(List<(int Start, int Length)> refs, int from, int start, int length) => Contains(refs, from, refs.Count, start, length);

        private bool Contains(List<(int Start, int Length)> refs, int from, int to, int start, int length)
        {
            var value = _arena.WrittenSpan.Slice(start, length);
            for (var i = from; i < to; i++)
                if (_arena.WrittenSpan.Slice(refs[i].Start, refs[i].Length).SequenceEqual(value)) return true;
            return false;
        }
    }

    /// <summary>A run of consecutive rows of one order: its first row's facts, its total, and where its items sit in the batch's arena.</summary>
    private sealed class Fragment(string orderId, string? customerId, DateTime occurredAt, int offset, string currency, string status,
        int jsonStart, int skuStart, int categoryStart, int linesStart)
    {
        public string OrderId { get; } = orderId;
        public string? CustomerId { get; } = customerId;
        public DateTime OccurredAt { get; } = occurredAt;
        public int Offset { get; } = offset;
        public string Currency { get; } = currency;
        public string Status { get; } = status;
        public decimal Total { get; set; }
        public int JsonStart { get; } = jsonStart;
        public int JsonLength { get; set; }
        public int SkuStart { get; } = skuStart;
        public int SkuCount { get; set; }
        public int CategoryStart { get; } = categoryStart;
        public int CategoryCount { get; set; }
        /// <summary>Where the run's items sit in the batch's rendering of the event's lines.</summary>
        public int LinesStart { get; } = linesStart;
        public int LinesLength { get; set; }

        /// <summary>The order was recorded before this import began: it is skipped.</summary>
        public bool RecordedBefore { get; set; }

        /// <summary>A later run of the same order in the same batch (its rows were not consecutive in the file).</summary>
        public Fragment? Next { get; private set; }

        public void Append(Fragment later)
        {
            var last = this;
            while (last.Next is not null) last = last.Next;
            last.Next = later;
            Total += later.Total;
        }
    }

    /// <summary>
    /// Returns the same string instance while the bytes repeat (rows of one order repeat its id,
    /// customer and time), so each is decoded once and runs can be told apart by reference.
    /// </summary>
    private sealed class BytesCache(Func<string, string>? normalise = null)
    {
        private byte[] _bytes = new byte[64];
        private int _length = -1;
        private string _value = "";

        public string Get(ReadOnlySpan<byte> bytes)
        {
            if (_length == bytes.Length && bytes.SequenceEqual(_bytes.AsSpan(0, _length))) return _value;
            if (_bytes.Length < bytes.Length) _bytes = new byte[bytes.Length * 2];
            bytes.CopyTo(_bytes);
            _length = bytes.Length;
            var s = System.Text.Encoding.UTF8.GetString(bytes);
            _value = normalise is null ? s : normalise(s);
            return _value;
        }
    }
}
