using Dapper;
using Npgsql;

namespace Crm.BuildingBlocks.Data;

/// <summary>
/// Tenant isolation by construction: after every migration run, each table of the schema that has a
/// <c>tenant_id</c> column gets row-level security (ENABLE and FORCE, so the tables' owner is bound too)
/// and one policy, <c>tenant_isolation</c>, that shows and accepts only the rows of the tenant
/// <see cref="TenantDb"/> set for the transaction. A table added by a later migration, in any service,
/// is covered without anyone remembering to: there is no list to forget a table in.
///
/// The runtime role (the user of ConnectionStrings:Postgres) gets plain DML rights and nothing else:
/// it owns no table, so it can neither drop a policy nor disable row-level security.
/// </summary>
public static class RowLevelSecurity
{
    public const string PolicyName = "tenant_isolation";

    /// <summary>The policy's test: the transaction's tenant, or every tenant for a named cross-tenant read.</summary>
    public const string Predicate =
        "tenant_id = current_setting('crm.tenant', true) OR current_setting('crm.tenant', true) = '*'";

    public static async Task EnsureAsync(NpgsqlConnection conn, string? runtimeRole, CancellationToken ct = default)
    {
        var tables = (await conn.QueryAsync<(string Table, bool Enabled, bool Forced, bool HasPolicy)>(new CommandDefinition("""
            SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,
                   EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid AND p.polname = @PolicyName)
            FROM pg_class c
            JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = current_schema()
            JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
            WHERE c.relkind IN ('r', 'p')
            """, new { PolicyName }, cancellationToken: ct))).AsList();
        foreach (var (table, enabled, forced, hasPolicy) in tables)
        {
            var name = Quote(table);
            if (!hasPolicy)
                await conn.ExecuteAsync(new CommandDefinition(
                    $"CREATE POLICY {PolicyName} ON {name} USING ({Predicate}) WITH CHECK ({Predicate})", cancellationToken: ct));
            if (!enabled) await conn.ExecuteAsync(new CommandDefinition($"ALTER TABLE {name} ENABLE ROW LEVEL SECURITY", cancellationToken: ct));
            if (!forced) await conn.ExecuteAsync(new CommandDefinition($"ALTER TABLE {name} FORCE ROW LEVEL SECURITY", cancellationToken: ct));
        }

        if (string.IsNullOrEmpty(runtimeRole)) return;
        var isMigrator = await conn.ExecuteScalarAsync<bool>(new CommandDefinition("SELECT current_user = @runtimeRole", new { runtimeRole }, cancellationToken: ct));
        if (isMigrator) return; // one role for both (a developer's setup): it owns the tables, FORCE still binds it
        var role = Quote(runtimeRole);
        await conn.ExecuteAsync(new CommandDefinition($"""
            GRANT USAGE ON SCHEMA public TO {role};
            GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role};
            REVOKE INSERT, UPDATE, DELETE ON schema_migrations FROM {role};
            GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role};
            """, cancellationToken: ct));
        // Narrow roles a migration created for one bulk path (crm_bulk_orders: INSERT on orders, for
        // COPY under SET LOCAL ROLE), which the runtime role may switch to; only those the migrator
        // can hand on.
        var bulkRoles = await conn.QueryAsync<string>(new CommandDefinition("""
            SELECT r.rolname FROM pg_roles r
            WHERE r.rolname LIKE 'crm\_bulk\_%' AND NOT r.rolcanlogin
              AND ((SELECT rolsuper FROM pg_roles WHERE rolname = current_user) OR pg_has_role(current_user, r.oid, 'USAGE WITH ADMIN OPTION'))
            """, cancellationToken: ct));
        foreach (var bulk in bulkRoles)
            await conn.ExecuteAsync(new CommandDefinition($"GRANT {Quote(bulk)} TO {role}", cancellationToken: ct));
    }

    /// <summary>
    /// Whether the connection's role escapes the policies (a superuser or a role with BYPASSRLS): a
    /// service refuses to start as one, since every tenant's rows would be visible to every query.
    /// </summary>
    public static Task<bool> BypassesAsync(NpgsqlConnection conn, CancellationToken ct = default) =>
        conn.ExecuteScalarAsync<bool>(new CommandDefinition(
            "SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user", cancellationToken: ct));

    private static string Quote(string identifier) => "\"" + identifier.Replace("\"", "\"\"", StringComparison.Ordinal) + "\"";
}
