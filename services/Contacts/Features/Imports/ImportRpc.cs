using Crm.BuildingBlocks.Data;
using Crm.BuildingBlocks.Errors;
using Crm.BuildingBlocks.Tenancy;
using Crm.Contacts.Features.Contacts;
using Crm.Contacts.Features.Imports;
using Crm.Contacts.V1;
using Dapper;
using Grpc.Core;

namespace Crm.Contacts.Features;

public sealed partial class ContactsGrpcService
{
    private const int ErrorsInResponse = 100;
    public const string ImportIdHeader = "crm-import-id";

    public override async Task<Import> ImportContacts(IAsyncStreamReader<ImportChunk> requestStream, ServerCallContext context)
    {
        var caller = context.Caller(Scope.ContactsWrite);
        var ct = context.CancellationToken;
        var header = await ReadHeaderAsync(requestStream, ct);
        if (header.Contacts is null) throw new InvalidArgumentException("header.contacts", "the column mapping is required");
        var workspace = await _workspaces.GetAsync(caller.TenantId, ct);
        return await RunImportAsync(caller.TenantId, "contacts", header, requestStream, context, async (run, csv) =>
            await new ContactImport(header.Contacts, workspace, run).RunAsync(_db, csv, ct));
    }

    public override async Task<Import> ImportTransactions(IAsyncStreamReader<ImportChunk> requestStream, ServerCallContext context)
    {
        var caller = context.Caller(Scope.ContactsWrite);
        var ct = context.CancellationToken;
        var header = await ReadHeaderAsync(requestStream, ct);
        if (header.Transactions is null) throw new InvalidArgumentException("header.transactions", "the column mapping is required");
        var workspace = await _workspaces.GetAsync(caller.TenantId, ct);
        return await RunImportAsync(caller.TenantId, "transactions", header, requestStream, context, async (run, csv) =>
            await new TransactionImport(header.Transactions, workspace, run).RunAsync(_db, csv, ct));
    }

    public override async Task<Import> GetImport(GetImportRequest request, ServerCallContext context)
    {
        var caller = context.Caller(Scope.ContactsRead);
        if (!Guid.TryParse(request.ImportId, out var importId)) throw new InvalidArgumentException("import_id", "is not a UUID");
        await using var scope = await _db.BeginAsync(caller.TenantId, context.CancellationToken);
        var conn = scope.Connection;
        return await LoadImportAsync(conn, caller.TenantId, importId);
    }

    public override async Task<ListImportErrorsResponse> ListImportErrors(ListImportErrorsRequest request, ServerCallContext context)
    {
        var caller = context.Caller(Scope.ContactsRead);
        if (!Guid.TryParse(request.ImportId, out var importId)) throw new InvalidArgumentException("import_id", "is not a UUID");
        var pageSize = PageToken.Size(request.PageSize);
        long? after = PageToken.Decode(request.PageToken) is { } s && long.TryParse(s, out var l) ? l : null;
        await using var scope = await _db.BeginAsync(caller.TenantId, context.CancellationToken);
        var conn = scope.Connection;
        var errors = (await conn.QueryAsync<(long Line, string Col, string Reason)>("""
            SELECT line, col, reason FROM import_errors
            WHERE tenant_id = @tenant AND import_id = @importId AND (@after::bigint IS NULL OR line > @after)
            ORDER BY line, col LIMIT @limit
            """, new { tenant = caller.TenantId, importId, after, limit = pageSize + 1 })).AsList();
        var response = new ListImportErrorsResponse();
        response.Errors.AddRange(errors.Take(pageSize).Select(e => new ImportError { Line = e.Line, Column = e.Col, Reason = e.Reason }));
        if (errors.Count > pageSize) response.NextPageToken = PageToken.Encode(errors[pageSize - 1].Line.ToString(System.Globalization.CultureInfo.InvariantCulture));
        return response;
    }

    private static async Task<ImportHeader> ReadHeaderAsync(IAsyncStreamReader<ImportChunk> stream, CancellationToken ct)
    {
        if (!await stream.MoveNext(ct) || stream.Current.PartCase != ImportChunk.PartOneofCase.Header)
            throw new InvalidArgumentException("header", "the first chunk must carry the import header (file name and column mapping)");
        var header = stream.Current.Header;
        if (header.Delimiter.Length > 1 || (header.Delimiter.Length == 1 && header.Delimiter[0] > 127))
            throw new InvalidArgumentException("header.delimiter", "must be a single ASCII character");
        return header;
    }

    private async Task<Import> RunImportAsync(string tenant, string kind, ImportHeader header,
        IAsyncStreamReader<ImportChunk> requestStream, ServerCallContext context, Func<ImportRun, CsvReader, Task> import)
    {
        var ct = context.CancellationToken;
        var chunks = new ChunkStream(requestStream);
        using var slot = await _importSlots.TakeAsync(ct);
        await using var run = await ImportRun.StartAsync(_db, _suppressions, tenant, kind, header.FileName, ct);
        // The id goes out at once in the response headers, so the caller can follow progress with GetImport.
        await context.WriteResponseHeadersAsync(new Metadata { { ImportIdHeader, run.ImportId.ToString() } });
        var csv = new CsvReader(chunks, header.Delimiter.Length == 1 ? (byte)header.Delimiter[0] : (byte)',');
        try
        {
            await import(run, csv);
        }
        catch (Exception ex)
        {
            // Nothing of a failed import's data is committed, except the contacts a transaction import
            // created for new customers (counted on the row); the row says why and which rows were bad.
            await run.FailAsync(ex is InvalidArgumentException ? ex.Message : $"{ex.GetType().Name}: {ex.Message}");
            throw;
        }
        _logger.LogInformation("Import {ImportId} ({Kind}) of {Tenant}: {Accepted} rows accepted, {Rejected} rejected",
            run.ImportId, kind, tenant, run.RowsAccepted, run.RowsRejected);
        await using var scope = await _db.BeginAsync(tenant, ct);
        var result = await LoadImportAsync(scope.Connection, tenant, run.ImportId);
        _statistics.Grew("orders", result.OrdersCreated);
        _statistics.Grew("contacts", result.ContactsCreated);
        return result;
    }

    private static async Task<Import> LoadImportAsync(Npgsql.NpgsqlConnection conn, string tenant, Guid importId)
    {
        var row = await conn.QuerySingleOrDefaultAsync<ImportRow>(
            "SELECT * FROM imports WHERE tenant_id = @tenant AND import_id = @importId", new { tenant, importId })
            ?? throw new NotFoundException($"Import {importId} not found.");
        var import = new Import
        {
            ImportId = row.ImportId.ToString(),
            Kind = row.Kind == "contacts" ? ImportKind.Contacts : ImportKind.Transactions,
            Status = row.Status switch { "running" => ImportStatus.Running, "completed" => ImportStatus.Completed, _ => ImportStatus.Failed },
            FileName = row.FileName,
            RowsRead = row.RowsRead,
            RowsAccepted = row.RowsAccepted,
            RowsRejected = row.RowsRejected,
            ContactsCreated = row.ContactsCreated,
            ContactsUpdated = row.ContactsUpdated,
            OrdersCreated = row.OrdersCreated,
            GuestOrdersCreated = row.GuestOrdersCreated,
            StartedAt = Timestamps.Of(row.StartedAt),
            FinishedAt = Timestamps.OfNullable(row.FinishedAt),
            Failure = row.Failure ?? "",
        };
        import.Errors.AddRange((await conn.QueryAsync<(long Line, string Col, string Reason)>(
            "SELECT line, col, reason FROM import_errors WHERE tenant_id = @tenant AND import_id = @importId ORDER BY line, col LIMIT @n",
            new { tenant, importId, n = ErrorsInResponse })).Select(e => new ImportError { Line = e.Line, Column = e.Col, Reason = e.Reason }));
        return import;
    }
}

internal sealed class ImportRow
{
    public Guid ImportId { get; set; }
    public string Kind { get; set; } = "";
    public string Status { get; set; } = "";
    public string FileName { get; set; } = "";
    public long RowsRead { get; set; }
    public long RowsAccepted { get; set; }
    public long RowsRejected { get; set; }
    public long ContactsCreated { get; set; }
    public long ContactsUpdated { get; set; }
    public long OrdersCreated { get; set; }
    public long GuestOrdersCreated { get; set; }
    public string? Failure { get; set; }
    public DateTime StartedAt { get; set; }
    public DateTime? FinishedAt { get; set; }
}
