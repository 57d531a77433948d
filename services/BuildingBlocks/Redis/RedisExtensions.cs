using Crm.BuildingBlocks.Hosting;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using StackExchange.Redis;

namespace Crm.BuildingBlocks.Redis;

public static class RedisExtensions
{
    /// <summary>One multiplexer from ConnectionStrings:Redis, and a readiness check on it.</summary>
    public static IServiceCollection AddCrmRedis(this IServiceCollection services, IConfiguration configuration)
    {
        var connection = configuration.GetConnectionString("Redis");
        if (string.IsNullOrWhiteSpace(connection)) throw new InvalidOperationException("ConnectionStrings:Redis is not configured.");
        services.AddSingleton<IConnectionMultiplexer>(_ =>
        {
            var redisOptions = ConfigurationOptions.Parse(connection);
            redisOptions.AbortOnConnectFail = false; // start, and become ready when Redis is
            // Replies are completed on the thread pool, not hopped through the library's own threads.
            redisOptions.SocketManager = SocketManager.ThreadPool;
            return ConnectionMultiplexer.Connect(redisOptions);
        });
        services.AddHealthChecks().AddCheck<RedisHealthCheck>("redis", tags: [ServiceDefaults.ReadyTag]);
        return services;
    }

    private sealed class RedisHealthCheck(IConnectionMultiplexer redis) : IHealthCheck
    {
        public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
        {
            try
            {
                await redis.GetDatabase().PingAsync();
                return HealthCheckResult.Healthy();
            }
            catch (RedisException ex)
            {
                return HealthCheckResult.Unhealthy("Redis is not reachable", ex);
            }
        }
    }
}
