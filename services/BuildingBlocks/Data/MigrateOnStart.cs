using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Npgsql;

namespace Crm.BuildingBlocks.Data;

public static class MigrateOnStartExtensions
{
    /// <summary>
    /// Applies migrations before the server accepts calls (Database:MigrateOnStart, default true; the
    /// Helm hook Job runs them with `migrate` and turns this off). Register it before any hosted
    /// service that touches the tables, such as the outbox relay: hosted services start in order.
    /// </summary>
    public static IServiceCollection AddMigrationsOnStart(this IServiceCollection services) =>
        services.AddHostedService<MigrateOnStart>();

    private sealed class MigrateOnStart(Migrator migrator, NpgsqlDataSource dataSource, IConfiguration configuration) : IHostedService
    {
        public async Task StartAsync(CancellationToken cancellationToken)
        {
            if (configuration.GetValue("Database:MigrateOnStart", true)) await migrator.MigrateAsync(cancellationToken);
            await RefuseBypassingRoleAsync(cancellationToken);
        }

        /// <summary>
        /// A service connected as a superuser or a BYPASSRLS role would see every tenant's rows whatever
        /// the policies say: it stops instead, naming the setting (Database:AllowRowLevelSecurityBypass
        /// lets a benchmark or an operator's one-off tool run so, knowingly).
        /// </summary>
        private async Task RefuseBypassingRoleAsync(CancellationToken ct)
        {
            if (configuration.GetValue("Database:AllowRowLevelSecurityBypass", false)) return;
            await using var conn = await dataSource.OpenConnectionAsync(ct);
            if (await RowLevelSecurity.BypassesAsync(conn, ct))
                throw new InvalidOperationException(
                    $"ConnectionStrings:Postgres connects as '{conn.UserName}', a superuser or BYPASSRLS role, which row-level security does not bind. " +
                    "Connect as a role that owns no table (migrations use ConnectionStrings:PostgresMigrations).");
        }

        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    }
}
