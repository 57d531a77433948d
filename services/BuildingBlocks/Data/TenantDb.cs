using Crm.BuildingBlocks.Tenancy;
using Dapper;
using Npgsql;

namespace Crm.BuildingBlocks.Data;

/// <summary>
/// The only way a service reaches its tenant-owned tables. Every tenant table is protected by
/// PostgreSQL row-level security (ENABLE + FORCE, policy <c>tenant_id = current_setting('crm.tenant')</c>,
/// see <see cref="RowLevelSecurity"/>), and this class sets that setting once per transaction
/// (<c>set_config(..., is_local =&gt; true)</c>, so it ends with the transaction and never leaks to the
/// next user of a pooled connection). A query that forgets its <c>tenant_id = @tenant</c> filter
/// therefore still sees one tenant's rows, and a connection opened around this class sees none.
///
/// The few deliberate cross-tenant reads (the deferred-message poller, API-key lookup, provider
/// callbacks that name no tenant) go through <see cref="BeginCrossTenantAsync"/>, which takes the
/// reason so that every such place is named at its call site and in the logs of a reviewer's grep.
/// </summary>
public sealed class TenantDb(NpgsqlDataSource dataSource)
{
    /// <summary>The PostgreSQL setting the policies read.</summary>
    public const string Setting = "crm.tenant";

    /// <summary>The setting's value for a deliberate cross-tenant transaction.</summary>
    public const string AllTenants = "*";

    /// <summary>Opens a connection and a transaction in which only <paramref name="tenantId"/>'s rows exist.</summary>
    public Task<TenantTransaction> BeginAsync(string tenantId, CancellationToken ct = default)
    {
        if (!TenantIds.IsValid(tenantId)) throw new ArgumentException($"Invalid tenant id '{tenantId}'.", nameof(tenantId));
        return StartAsync(tenantId, ct);
    }

    /// <summary>
    /// Like <see cref="BeginAsync"/>, but REPEATABLE READ and READ ONLY: every statement of the transaction
    /// reads the same snapshot, taken at its first statement. For exports that page through a table in
    /// many statements and must not see a row twice or miss one that moved. Keep it short-lived: a long
    /// snapshot holds back vacuum.
    /// </summary>
    public Task<TenantTransaction> BeginSnapshotAsync(string tenantId, CancellationToken ct = default)
    {
        if (!TenantIds.IsValid(tenantId)) throw new ArgumentException($"Invalid tenant id '{tenantId}'.", nameof(tenantId));
        return StartAsync(tenantId, ct, System.Data.IsolationLevel.RepeatableRead, "SET TRANSACTION READ ONLY; ");
    }

    /// <summary>
    /// Opens a transaction that sees every tenant's rows. Only for the reads that must (a poller over all
    /// tenants, resolving which tenant a credential or a provider callback belongs to); <paramref name="reason"/>
    /// names it.
    /// </summary>
    public Task<TenantTransaction> BeginCrossTenantAsync(string reason, CancellationToken ct = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(reason);
        return StartAsync(AllTenants, ct);
    }

    private async Task<TenantTransaction> StartAsync(string tenant, CancellationToken ct,
        System.Data.IsolationLevel isolation = System.Data.IsolationLevel.ReadCommitted, string before = "")
    {
        var conn = await dataSource.OpenConnectionAsync(ct);
        try
        {
            var tx = await conn.BeginTransactionAsync(isolation, ct);
            // Npgsql sends the BEGIN with this statement: one round trip.
            await conn.ExecuteAsync(new CommandDefinition(before + "SELECT set_config('crm.tenant', @tenant, true)", new { tenant }, tx, cancellationToken: ct));
            return new TenantTransaction(conn, tx, tenant);
        }
        catch
        {
            await conn.DisposeAsync();
            throw;
        }
    }
}

/// <summary>
/// A connection inside a transaction scoped to one tenant (or, for the named cross-tenant reads, all).
/// Disposing it without <see cref="CommitAsync"/> rolls back: read-only uses need not commit.
/// </summary>
public sealed class TenantTransaction(NpgsqlConnection connection, NpgsqlTransaction transaction, string tenant) : IAsyncDisposable
{
    public NpgsqlConnection Connection { get; } = connection;
    public NpgsqlTransaction Transaction { get; } = transaction;

    /// <summary>The tenant the transaction sees, or <see cref="TenantDb.AllTenants"/>.</summary>
    public string Tenant { get; } = tenant;

    /// <summary>Commits. The tenant setting ends with the transaction: read what the answer needs before this.</summary>
    public Task CommitAsync(CancellationToken ct = default) => Transaction.CommitAsync(ct);

    public void Deconstruct(out NpgsqlConnection connection, out NpgsqlTransaction transaction)
    {
        connection = Connection;
        transaction = Transaction;
    }

    public async ValueTask DisposeAsync()
    {
        await Transaction.DisposeAsync();
        await Connection.DisposeAsync();
    }
}
