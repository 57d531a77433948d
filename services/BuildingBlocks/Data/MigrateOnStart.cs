using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

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

    private sealed class MigrateOnStart(Migrator migrator, IConfiguration configuration) : IHostedService
    {
        public Task StartAsync(CancellationToken cancellationToken) =>
            configuration.GetValue("Database:MigrateOnStart", true) ? migrator.MigrateAsync(cancellationToken) : Task.CompletedTask;

        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    }
}
