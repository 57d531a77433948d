using Crm.BuildingBlocks.Hosting;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Npgsql;

namespace Crm.BuildingBlocks.Data;

public static class PostgresExtensions
{
    /// <summary>
    /// Registers the service's data access: its runtime <see cref="NpgsqlDataSource"/> (ConnectionStrings:Postgres,
    /// a role that owns no table), <see cref="TenantDb"/> over it, the migrations (the building blocks'
    /// outbox/inbox tables, then the service's own), run as the tables' owner
    /// (ConnectionStrings:PostgresMigrations, defaulting to ConnectionStrings:Postgres), and a readiness check.
    /// </summary>
    public static IServiceCollection AddPostgres(this IServiceCollection services, IConfiguration configuration, params MigrationSource[] migrations)
    {
        var connectionString = configuration.GetConnectionString("Postgres");
        if (string.IsNullOrWhiteSpace(connectionString))
            throw new InvalidOperationException("ConnectionStrings:Postgres is not configured.");
        var migrationsConnectionString = configuration.GetConnectionString("PostgresMigrations") is { Length: > 0 } m ? m : connectionString;
        var runtimeRole = new NpgsqlConnectionStringBuilder(connectionString).Username;

        Dapper.DefaultTypeMap.MatchNamesWithUnderscores = true;
        services.AddSingleton(_ =>
        {
            var b = new NpgsqlDataSourceBuilder(connectionString);
            b.ConfigureTracing(_ => { });
            return b.Build();
        });
        services.AddSingleton(sp => new TenantDb(sp.GetRequiredService<NpgsqlDataSource>()));
        services.AddSingleton(sp => new Migrator(
            NpgsqlDataSource.Create(migrationsConnectionString),
            [MigrationSource.BuildingBlocks, .. migrations],
            sp.GetRequiredService<Microsoft.Extensions.Logging.ILogger<Migrator>>(),
            runtimeRole));
        services.AddHealthChecks().AddCheck<PostgresHealthCheck>("postgres", tags: [ServiceDefaults.ReadyTag]);
        return services;
    }
}

internal sealed class PostgresHealthCheck(NpgsqlDataSource dataSource) : IHealthCheck
{
    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        try
        {
            await using var cmd = dataSource.CreateCommand("SELECT 1");
            await cmd.ExecuteScalarAsync(cancellationToken);
            return HealthCheckResult.Healthy();
        }
        catch (Exception ex) when (ex is NpgsqlException or TimeoutException or System.Net.Sockets.SocketException)
        {
            return HealthCheckResult.Unhealthy("PostgreSQL is not reachable", ex);
        }
    }
}
