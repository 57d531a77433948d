using Crm.BuildingBlocks.Hosting;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using StackExchange.Redis;

namespace Crm.BuildingBlocks.Redis;

public static class RedisExtensions
{
    /// <summary>
    /// One multiplexer from ConnectionStrings:Redis, and a readiness check on it. With
    /// <paramref name="degradesWithoutRedis"/>, for a service that refuses only the requests that need
    /// Redis while it is away (the gateway): no readiness check, since a Redis blip would take every
    /// replica out of its Service at once, and commands fail at once while disconnected instead of
    /// waiting in the backlog for a reconnect (up to the 5 s timeout, per request).
    /// </summary>
    public static IServiceCollection AddCrmRedis(this IServiceCollection services, IConfiguration configuration, bool degradesWithoutRedis = false)
    {
        var connection = configuration.GetConnectionString("Redis");
        if (string.IsNullOrWhiteSpace(connection)) throw new InvalidOperationException("ConnectionStrings:Redis is not configured.");
        services.AddSingleton<IConnectionMultiplexer>(_ =>
        {
            var redisOptions = ConfigurationOptions.Parse(connection);
            redisOptions.AbortOnConnectFail = false; // start, and become ready when Redis is
            // Replies are completed on the thread pool, not hopped through the library's own threads.
            redisOptions.SocketManager = SocketManager.ThreadPool;
            if (degradesWithoutRedis) redisOptions.BacklogPolicy = BacklogPolicy.FailFast;
            return ConnectionMultiplexer.Connect(redisOptions);
        });
        if (!degradesWithoutRedis) services.AddHealthChecks().AddCheck<RedisHealthCheck>("redis", tags: [ServiceDefaults.ReadyTag]);
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
