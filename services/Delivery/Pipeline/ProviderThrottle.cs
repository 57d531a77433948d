using StackExchange.Redis;

namespace Crm.Delivery.Pipeline;

/// <summary>
/// A cluster-wide sending rate per provider account (a Twilio long code: 1 a second), shared by all
/// replicas through Redis. GCRA: one key holds the theoretical arrival time of the next message; a
/// caller told to wait is not counted, so nothing spins and nothing is dropped.
/// </summary>
public sealed class ProviderThrottle(IConnectionMultiplexer redis, DeliveryOptions options)
{
    // KEYS[1] the account's key. ARGV: now (µs), emission interval (µs). Returns 0 (go) or the µs to wait.
    private const string Script = """
        local now = tonumber(ARGV[1])
        local interval = tonumber(ARGV[2])
        local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
        if tat < now then tat = now end
        if tat > now then return tat - now end
        redis.call('SET', KEYS[1], tat + interval, 'PX', math.ceil(interval / 1000) + 1000)
        return 0
        """;

    /// <summary>Zero when the message may go now, else how long until it may.</summary>
    public async Task<TimeSpan> TryAcquireAsync(string tenant, string accountId, double messagesPerSecond, DateTimeOffset now)
    {
        // A small margin keeps the provider's own measurement (arrival times at its edge) under the rate.
        // Microseconds, so that fast accounts (thousands a second) are not rounded down to 1,000/s.
        var interval = (long)Math.Ceiling(1_000_000.0 / messagesPerSecond * 1.05);
        var nowMicros = (now - DateTimeOffset.UnixEpoch).Ticks / 10;
        var wait = (long)await redis.GetDatabase().ScriptEvaluateAsync(Script,
            [(RedisKey)$"{options.RedisKeyPrefix}{{p:{tenant}:{accountId}}}:rate"], [nowMicros, interval]);
        return TimeSpan.FromTicks(wait * 10);
    }
}
