using Crm.BuildingBlocks.Data;
using Crm.TestSupport;
using Dapper;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;

namespace Crm.Contacts.Tests;

/// <summary>Migrations in a transaction, and outside one (CREATE INDEX CONCURRENTLY), each applied once.</summary>
public sealed class MigratorTests : IAsyncLifetime
{
    private readonly string _database = TestServers.UniqueName("crm_migrator");
    private NpgsqlDataSource? _db;

    public async Task InitializeAsync() => _db = NpgsqlDataSource.Create(await TestServers.CreateDatabaseAsync(_database));

    public async Task DisposeAsync()
    {
        await _db!.DisposeAsync();
        await TestServers.DropDatabaseAsync(_database);
    }

    [Fact]
    public async Task Should_build_an_index_concurrently_outside_a_transaction_and_apply_each_file_once()
    {
        var migrator = new Migrator(_db!, [new MigrationSource("test", typeof(MigratorTests).Assembly)], NullLogger<Migrator>.Instance);
        await migrator.MigrateAsync();
        await migrator.MigrateAsync(); // nothing left to apply

        await using var conn = await _db!.OpenConnectionAsync();
        Assert.Equal(["0001_items.sql", "0002_items_owner_index.sql"],
            await conn.QueryAsync<string>("SELECT name FROM schema_migrations WHERE module = 'test' ORDER BY version"));
        Assert.True(await conn.ExecuteScalarAsync<bool>(
            "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = 'items_owner'"));
        Assert.Equal(1000, await conn.ExecuteScalarAsync<long>("SELECT count(*) FROM items"));
    }

    [Fact]
    public async Task Should_let_replicas_that_start_together_apply_an_index_built_concurrently_once()
    {
        // Two replicas migrating at once: the one waiting for the lock must not hold a snapshot the
        // other's CREATE INDEX CONCURRENTLY would wait for (a deadlock PostgreSQL would break by failing one).
        var migrators = Enumerable.Range(0, 3)
            .Select(_ => new Migrator(_db!, [new MigrationSource("test", typeof(MigratorTests).Assembly)], NullLogger<Migrator>.Instance)).ToList();
        await Task.WhenAll(migrators.Select(m => m.MigrateAsync())).WaitAsync(TimeSpan.FromSeconds(60));

        await using var conn = await _db!.OpenConnectionAsync();
        Assert.Equal(2, await conn.ExecuteScalarAsync<long>("SELECT count(*) FROM schema_migrations WHERE module = 'test'"));
        Assert.True(await conn.ExecuteScalarAsync<bool>(
            "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = 'items_owner'"));
    }

    [Fact]
    public void Should_split_a_file_into_its_statements_leaving_out_comments()
    {
        var statements = Migrator.Statements("""
            -- migrate: outside a transaction
            -- why
            DROP INDEX CONCURRENTLY IF EXISTS a;
            CREATE INDEX CONCURRENTLY a ON t (x);   
            ALTER INDEX a RENAME TO b;
            -- the end
            """);
        Assert.Equal(3, statements.Count);
        Assert.EndsWith("DROP INDEX CONCURRENTLY IF EXISTS a", statements[0]);
        Assert.Equal("CREATE INDEX CONCURRENTLY a ON t (x)", statements[1]);
        Assert.StartsWith("ALTER INDEX a RENAME TO b", statements[2]);
    }
}
