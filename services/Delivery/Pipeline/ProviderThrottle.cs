using StackExchange.Redis;

namespace Crm.Delivery.Pipeline;

/// <summary>
/// A cluster-wide sending rate per provider account (a Twilio long code: 1 a second), shared by all
/// replicas through Redis. GCRA: one key holds the theoretical arrival time of the next message; a
/// caller told to wait is not counted, so nothing spins and nothing is dropped.
/// </summary>
public sealed class ProviderThrottle(IConnectionMultiplexer redis, DeliveryOptions options)
{
    // KEYS[1] the account's key. ARGV: now (ms), emission interval (ms). Returns 0 (go) or the ms to wait.
    private const string Script = """
        local now = tonumber(ARGV[1])
        local interval = tonumber(ARGV[2])
        local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
        if tat < now then tat = now end
        if tat > now then return tat - now end
        redis.call('SET', KEYS[1], tat + interval, 'PX', interval + 1000)
        return 0
        """;

    /// <summary>Zero when the message may go now, else how long until it may.</summary>
    public async Task<TimeSpan> TryAcquireAsync(string tenant, string accountId, double messagesPerSecond, DateTimeOffset now)
    {
        // A small margin keeps the provider's own measurement (arrival times at its edge) under the rate.
        var interval = (long)Math.Ceiling(1000.0 / messagesPerSecond * 1.05);
        var wait = (long)await redis.GetDatabase().ScriptEvaluateAsync(Script,
            [(RedisKey)$"{options.RedisKeyPrefix}{{p:{tenant}:{accountId}}}:rate"], [now.ToUnixTimeMilliseconds(), interval]);
        return TimeSpan.FromMilliseconds(wait);
    }
}
