using StackExchange.Redis;

namespace Crm.Gateway.Auth;

/// <summary>
/// A rate per API key shared by every gateway replica, in Redis: GCRA, one key per API key holding
/// the theoretical arrival time of its next request. A key may burst up to
/// <see cref="GatewayOptions.Burst"/> requests, then goes at <see cref="GatewayOptions.RequestsPerSecond"/>;
/// a runaway script slows down, other keys go on. Redis's own clock is used, so replicas agree.
/// </summary>
public sealed class KeyRateLimits(IConnectionMultiplexer redis, GatewayOptions options)
{
    // KEYS[1] the API key's rate key. ARGV: interval (µs), burst tolerance (µs).
    // Returns 0 when the request may go (and takes its slot), else the µs until one would.
    private const string Script = """
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
        local interval = tonumber(ARGV[1])
        local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
        if tat < now then tat = now end
        local allowed_at = tat - tonumber(ARGV[2])
        if now < allowed_at then return allowed_at - now end
        local next_tat = tat + interval
        redis.call('SET', KEYS[1], next_tat, 'PX', math.ceil((next_tat - now) / 1000) + 1000)
        return 0
        """;

    /// <returns>Zero when the request may go, else how long until one of this key's would.</returns>
    public async Task<TimeSpan> TryTakeAsync(string keyId)
    {
        var interval = (long)Math.Ceiling(1_000_000.0 / options.RequestsPerSecond);
        var wait = (long)await redis.GetDatabase().ScriptEvaluateAsync(Script,
            [(RedisKey)$"{options.RedisKeyPrefix}{{gw:{keyId}}}:rate"], [interval, interval * (Math.Max(1, options.Burst) - 1)]);
        return TimeSpan.FromTicks(wait * 10);
    }
}
