using System.Reflection;
using Dapper;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace Crm.BuildingBlocks.Data;

/// <summary>SQL files embedded in an assembly, named NNNN_description.sql, applied in order under one module name.</summary>
public sealed record MigrationSource(string Module, Assembly Assembly)
{
    public static readonly MigrationSource BuildingBlocks = new("building_blocks", typeof(MigrationSource).Assembly);

    public IEnumerable<(int Version, string Name, string Sql)> Load()
    {
        foreach (var resource in Assembly.GetManifestResourceNames().Where(n => n.EndsWith(".sql", StringComparison.Ordinal)))
        {
            // Resource names look like Crm.Contacts.Data.Migrations.0001_initial.sql
            var file = resource[(resource.LastIndexOf(".Migrations.", StringComparison.Ordinal) + ".Migrations.".Length)..];
            var version = int.Parse(file.AsSpan(0, file.IndexOf('_', StringComparison.Ordinal)), System.Globalization.CultureInfo.InvariantCulture);
            using var stream = Assembly.GetManifestResourceStream(resource)!;
            using var reader = new StreamReader(stream);
            yield return (version, file, reader.ReadToEnd());
        }
    }
}

/// <summary>
/// Forward-only migrations: each file runs once, in its own transaction, under an advisory lock so that
/// replicas starting together (or the Helm hook Job and a pod) never apply the same file twice.
///
/// A file whose first line is <c>-- migrate: outside a transaction</c> runs statement by statement
/// without one, for what PostgreSQL refuses inside a transaction (CREATE INDEX CONCURRENTLY, which
/// builds an index on a large table without blocking its writes). Its statements end with ';' at the
/// end of a line, and each must be safe to run again: if the process dies half-way, the whole file
/// runs again at the next start.
///
/// Migrations run as the tables' owner (ConnectionStrings:PostgresMigrations); afterwards every
/// tenant table is put under row-level security and the service's runtime role
/// (<paramref name="runtimeRole"/>, the user of ConnectionStrings:Postgres) gets DML rights on them
/// (<see cref="RowLevelSecurity"/>).
/// </summary>
public sealed class Migrator(NpgsqlDataSource dataSource, IReadOnlyList<MigrationSource> sources, ILogger<Migrator> logger, string? runtimeRole = null)
{
    private const long LockKey = 0x43524D5F4D4947; // "CRM_MIG"
    public const string OutsideTransaction = "-- migrate: outside a transaction";

    public async Task MigrateAsync(CancellationToken ct = default)
    {
        await using var conn = await dataSource.OpenConnectionAsync(ct);
        // Polled, not waited for inside a statement: a replica blocked in pg_advisory_lock would hold a
        // snapshot, and CREATE INDEX CONCURRENTLY on the replica holding the lock waits for every older
        // snapshot: a deadlock PostgreSQL resolves by failing one of them.
        while (!await conn.ExecuteScalarAsync<bool>("SELECT pg_try_advisory_lock(@LockKey)", new { LockKey }))
            await Task.Delay(TimeSpan.FromMilliseconds(500), ct);
        try
        {
            await conn.ExecuteAsync("""
                CREATE TABLE IF NOT EXISTS schema_migrations (
                    module     text        NOT NULL,
                    version    int         NOT NULL,
                    name       text        NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now(),
                    PRIMARY KEY (module, version))
                """);
            foreach (var source in sources)
            {
                var applied = (await conn.QueryAsync<int>(
                    "SELECT version FROM schema_migrations WHERE module = @Module", new { source.Module })).ToHashSet();
                foreach (var (version, name, sql) in source.Load().OrderBy(m => m.Version))
                {
                    if (applied.Contains(version)) continue;
                    // No time limit: an index built on a large table takes as long as it takes.
                    if (sql.StartsWith(OutsideTransaction, StringComparison.Ordinal))
                    {
                        foreach (var statement in Statements(sql))
                            await conn.ExecuteAsync(new CommandDefinition(statement, commandTimeout: 0, cancellationToken: ct));
                        await RecordAsync(conn, null, source.Module, version, name);
                    }
                    else
                    {
                        await using var tx = await conn.BeginTransactionAsync(ct);
                        await conn.ExecuteAsync(new CommandDefinition(sql, transaction: tx, commandTimeout: 0, cancellationToken: ct));
                        await RecordAsync(conn, tx, source.Module, version, name);
                        await tx.CommitAsync(ct);
                    }
                    logger.LogInformation("Applied migration {Module}/{Name}", source.Module, name);
                }
            }
            await RowLevelSecurity.EnsureAsync(conn, runtimeRole, ct);
        }
        finally
        {
            await conn.ExecuteAsync("SELECT pg_advisory_unlock(@LockKey)", new { LockKey });
        }
    }

    private static Task RecordAsync(NpgsqlConnection conn, NpgsqlTransaction? tx, string module, int version, string name) =>
        conn.ExecuteAsync("INSERT INTO schema_migrations (module, version, name) VALUES (@module, @version, @name)",
            new { module, version, name }, tx);

    /// <summary>The statements of a file run outside a transaction: split where a line ends with ';', comments-only parts dropped.</summary>
    public static IReadOnlyList<string> Statements(string sql) =>
        [.. System.Text.RegularExpressions.Regex.Split(sql, @";[ \t]*\r?\n")
            .Select(part => part.Trim().TrimEnd(';'))
            .Where(part => part.Split('\n').Any(line => line.Trim() is { Length: > 0 } l && !l.StartsWith("--", StringComparison.Ordinal)))];
}
