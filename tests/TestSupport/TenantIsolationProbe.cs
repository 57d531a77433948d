using Crm.BuildingBlocks.Data;
using Dapper;
using Npgsql;

namespace Crm.TestSupport;

/// <summary>
/// Looks at a service's database the way a forgetful query would: every table with a tenant_id column,
/// read with no tenant filter at all, as the service's runtime role, in a transaction <see cref="TenantDb"/>
/// set for one tenant.
/// </summary>
public static class TenantIsolationProbe
{
    public sealed record TableView(string Table, bool Enabled, bool Forced, long OwnerSeesOfOther, string[] SeenAsTenant, long SeenWithoutTenant);

    /// <param name="ownerConnectionString">The database owner's connection (sees every row; used to know what exists).</param>
    /// <param name="tenant">The tenant the probing transaction is set for.</param>
    /// <param name="other">Another tenant with rows in the same tables.</param>
    public static async Task<IReadOnlyList<TableView>> ViewAsync(string ownerConnectionString, string tenant, string other)
    {
        await using var owner = new NpgsqlConnection(ownerConnectionString);
        await owner.OpenAsync();
        var tables = (await owner.QueryAsync<(string Table, bool Enabled, bool Forced)>("""
            SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity
            FROM pg_class c
            JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
            JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
            WHERE c.relkind IN ('r', 'p') ORDER BY c.relname
            """)).AsList();

        await using var app = NpgsqlDataSource.Create(TestServers.AppConnectionString(ownerConnectionString));
        var db = new TenantDb(app);
        var views = new List<TableView>();
        foreach (var (table, enabled, forced) in tables)
        {
            var ofOther = await owner.ExecuteScalarAsync<long>($"SELECT count(*) FROM \"{table}\" WHERE tenant_id = @other", new { other });
            string[] seen;
            await using (var scope = await db.BeginAsync(tenant))
                seen = (await scope.Connection.QueryAsync<string>($"SELECT DISTINCT tenant_id FROM \"{table}\"")).ToArray();
            await using var bare = await app.OpenConnectionAsync();
            var withoutTenant = await bare.ExecuteScalarAsync<long>($"SELECT count(*) FROM \"{table}\"");
            views.Add(new TableView(table, enabled, forced, ofOther, seen, withoutTenant));
        }
        return views;
    }

    /// <summary>What the runtime role gets when it tries to switch the protection off: PostgreSQL's error code.</summary>
    public static async Task<string?> TryDisableAsync(string ownerConnectionString, string table)
    {
        await using var app = new NpgsqlConnection(TestServers.AppConnectionString(ownerConnectionString));
        await app.OpenAsync();
        try
        {
            await app.ExecuteAsync($"ALTER TABLE \"{table}\" DISABLE ROW LEVEL SECURITY");
            return null;
        }
        catch (PostgresException e)
        {
            return e.SqlState;
        }
    }

    /// <summary>A row written for <paramref name="other"/> from a transaction set for <paramref name="tenant"/>: PostgreSQL's error code.</summary>
    public static async Task<string?> TryWriteAsOtherAsync(string ownerConnectionString, string tenant, string sql, object parameters)
    {
        await using var app = NpgsqlDataSource.Create(TestServers.AppConnectionString(ownerConnectionString));
        await using var scope = await new TenantDb(app).BeginAsync(tenant);
        try
        {
            await scope.Connection.ExecuteAsync(sql, parameters);
            return null;
        }
        catch (PostgresException e)
        {
            return e.SqlState;
        }
    }
}
