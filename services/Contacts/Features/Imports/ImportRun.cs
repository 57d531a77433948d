using Crm.BuildingBlocks.Data;
using System.Diagnostics;
using Crm.Contacts.V1;
using Dapper;
using Npgsql;

namespace Crm.Contacts.Features.Imports;

/// <summary>
/// The `imports` row of one running import: progress and rejected rows are written in short
/// transactions of their own, so GetImport shows them while the data is still inside the import's
/// transaction. The final counts commit with the data.
/// </summary>
public sealed class ImportRun : IAsyncDisposable
{
    public const int MaxStoredErrors = 10_000;
    private static readonly TimeSpan ProgressEvery = TimeSpan.FromMilliseconds(500);

    private readonly TenantDb _db;
    private readonly List<ImportError> _pendingErrors = [];
    /// <summary>One progress write at a time, so a later count never lands before an earlier one.</summary>
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _progressLoop;
    private long _storedErrors;
    private long _rowsRead, _rowsAccepted, _rowsRejected, _contactsCommitted;

    private ImportRun(TenantDb db, string tenant, Guid importId, Suppressions.SuppressionKey suppressions)
    {
        Suppressions = suppressions;
        _db = db;
        Tenant = tenant;
        ImportId = importId;
        _progressLoop = Task.Run(ReportProgressAsync);
    }

    public string Tenant { get; }
    public Guid ImportId { get; }
    public long RowsRead => Interlocked.Read(ref _rowsRead);
    public long RowsAccepted => Interlocked.Read(ref _rowsAccepted);
    public long RowsRejected => Interlocked.Read(ref _rowsRejected);

    /// <summary>The key of the erased-identity hashes the import checks new contacts against.</summary>
    public Suppressions.SuppressionKey Suppressions { get; }

    public static async Task<ImportRun> StartAsync(TenantDb db, Suppressions.SuppressionKey suppressions, string tenant, string kind, string fileName,
        CancellationToken ct)
    {
        var importId = Guid.CreateVersion7();
        await using (var scope = await db.BeginAsync(tenant, ct))
        {
            await scope.Connection.ExecuteAsync(
                "INSERT INTO imports (tenant_id, import_id, kind, status, file_name) VALUES (@tenant, @importId, @kind, 'running', @fileName)",
                new { tenant, importId, kind, fileName });
            await scope.CommitAsync(ct);
        }
        return new ImportRun(db, tenant, importId, suppressions);
    }

    public void Read() => Interlocked.Increment(ref _rowsRead);

    /// <summary>Contacts the import created and committed outside its transaction: counted even if the import fails.</summary>
    public void ContactsCommitted(long count) => Interlocked.Add(ref _contactsCommitted, count);

    public long ContactsCreatedOutsideTransaction => Interlocked.Read(ref _contactsCommitted);

    public void Accepted() => Interlocked.Increment(ref _rowsAccepted);

    public void Reject(long line, string column, string reason)
    {
        Interlocked.Increment(ref _rowsRejected);
        lock (_pendingErrors)
        {
            if (_storedErrors + _pendingErrors.Count < MaxStoredErrors)
                _pendingErrors.Add(new ImportError { Line = line, Column = column, Reason = reason });
        }
    }

    /// <summary>Twice a second, whatever the client's pace, so a stalled upload still shows where it is.</summary>
    private async Task ReportProgressAsync()
    {
        using var timer = new PeriodicTimer(ProgressEvery);
        try
        {
            // A write once begun is finished: stopping the reports must not roll back rows it took from the queue.
            while (await timer.WaitForNextTickAsync(_stop.Token)) await FlushAsync(CancellationToken.None);
        }
        catch (OperationCanceledException)
        {
            // The import finished.
        }
    }

    public async Task FlushAsync(CancellationToken ct)
    {
        await _writeLock.WaitAsync(ct);
        try
        {
            await using var scope = await _db.BeginAsync(Tenant, ct);
            var conn = scope.Connection;
            ImportError[] errors;
            lock (_pendingErrors)
            {
                errors = _pendingErrors.ToArray();
                _pendingErrors.Clear();
                _storedErrors += errors.Length;
            }
            if (errors.Length > 0)
            {
                await conn.ExecuteAsync(new CommandDefinition("""
                    INSERT INTO import_errors (tenant_id, import_id, line, col, reason)
                    SELECT @Tenant, @ImportId, e.line, e.col, e.reason FROM unnest(@lines, @cols, @reasons) AS e(line, col, reason)
                    ON CONFLICT DO NOTHING
                    """, new
                {
                    Tenant, ImportId,
                    lines = errors.Select(e => e.Line).ToArray(),
                    cols = errors.Select(e => e.Column).ToArray(),
                    reasons = errors.Select(e => e.Reason).ToArray(),
                }, cancellationToken: ct));
            }
            await conn.ExecuteAsync(new CommandDefinition(
                "UPDATE imports SET rows_read = @RowsRead, rows_accepted = @RowsAccepted, rows_rejected = @RowsRejected WHERE tenant_id = @Tenant AND import_id = @ImportId AND status = 'running'",
                new { RowsRead, RowsAccepted, RowsRejected, Tenant, ImportId }, cancellationToken: ct));
            await scope.CommitAsync(ct);
        }
        finally
        {
            _writeLock.Release();
        }
    }

    /// <summary>Stops progress reports and stores the remaining rejected rows; call before the final merge.</summary>
    public async Task FinishReadingAsync(CancellationToken ct)
    {
        await _stop.CancelAsync();
        await _progressLoop;
        await FlushAsync(ct);
    }

    /// <summary>
    /// Final counts, written in the import's own transaction so they commit with the data. The end is
    /// clock_timestamp(): now() is the time the transaction began, at the start of the import.
    /// </summary>
    public Task CompleteAsync(NpgsqlConnection conn, NpgsqlTransaction tx, long contactsCreated, long contactsUpdated,
        long ordersCreated, long guestOrdersCreated) =>
        conn.ExecuteAsync("""
            UPDATE imports SET status = 'completed', rows_read = @RowsRead, rows_accepted = @RowsAccepted, rows_rejected = @RowsRejected,
                contacts_created = @contactsCreated, contacts_updated = @contactsUpdated, orders_created = @ordersCreated,
                guest_orders_created = @guestOrdersCreated, finished_at = clock_timestamp()
            WHERE tenant_id = @Tenant AND import_id = @ImportId
            """, new { RowsRead, RowsAccepted, RowsRejected, contactsCreated, contactsUpdated, ordersCreated, guestOrdersCreated, Tenant, ImportId }, tx);

    public async Task FailAsync(string reason)
    {
        await FinishReadingAsync(CancellationToken.None);
        await using var scope = await _db.BeginAsync(Tenant);
        await scope.Connection.ExecuteAsync(
            """
            UPDATE imports SET status = 'failed', failure = @reason, contacts_created = @contactsCreated, finished_at = clock_timestamp()
            WHERE tenant_id = @Tenant AND import_id = @ImportId
            """, new { reason, contactsCreated = ContactsCreatedOutsideTransaction, Tenant, ImportId });
        await scope.CommitAsync();
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        await _progressLoop;
        _stop.Dispose();
        _writeLock.Dispose();
    }
}
