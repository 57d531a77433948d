using StackExchange.Redis;

namespace Crm.Delivery.Pipeline;

/// <summary>
/// A cluster-wide sending rate per provider account (a Twilio long code: 1 a second), shared by all
/// replicas through Redis. GCRA: one key holds the theoretical arrival time of the next free slot;
/// a batch reserves consecutive slots and each message waits for its own, so nothing spins, nothing
/// is dropped, and the provider never sees more than its rate.
/// </summary>
public sealed class ProviderThrottle(IConnectionMultiplexer redis, DeliveryOptions options)
{
    // KEYS[1] the account's key. ARGV: now (µs), emission interval (µs), count, longest wait (µs).
    // Grants the next slots that come within the longest wait (at most count) and returns
    // {wait until the first granted slot, slots granted, wait until one more could be granted}.
    // Slots not granted are not taken, so callers that come back later find them free.
    private const string Script = """
        local now = tonumber(ARGV[1])
        local interval = tonumber(ARGV[2])
        local count = tonumber(ARGV[3])
        local longest = tonumber(ARGV[4])
        local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
        if tat < now then tat = now end
        local granted = 0
        while granted < count and tat + granted * interval - now <= longest do granted = granted + 1 end
        if granted > 0 then
          redis.call('SET', KEYS[1], tat + granted * interval, 'PX', math.ceil((tat + granted * interval - now) / 1000) + 1000)
        end
        return {tat - now, granted, tat + granted * interval - longest - now}
        """;

    /// <summary>
    /// Slots for up to <paramref name="count"/> messages of one account in one round trip: the wait
    /// before each granted message may go, and, for the rest, when to come back.
    /// </summary>
    public async Task<(IReadOnlyList<TimeSpan> Waits, TimeSpan RetryAfter)> ReserveSlotsAsync(
        string tenant, string accountId, double messagesPerSecond, int count, TimeSpan longestWait, DateTimeOffset now)
    {
        var interval = Interval(messagesPerSecond);
        var reply = (RedisResult[])(await redis.GetDatabase().ScriptEvaluateAsync(Script,
            [(RedisKey)$"{options.RedisKeyPrefix}{{p:{tenant}:{accountId}}}:rate"],
            [Micros(now), interval, count, longestWait.Ticks / 10]))!;
        var first = (long)reply[0];
        var granted = (int)reply[1];
        var retry = Math.Max((long)reply[2], 1000);
        return (Enumerable.Range(0, granted).Select(i => TimeSpan.FromTicks((first + i * interval) * 10)).ToList(), TimeSpan.FromTicks(retry * 10));
    }

    /// <summary>Accounts this slow are also paced on their last answer (see <see cref="PaceAsync"/>).</summary>
    public const double StrictPacingBelow = 20;

    // KEYS[1] the account's last-answer key. ARGV: now (µs), interval (µs). Returns the µs to wait (0: go).
    private const string PaceScript = """
        local last = tonumber(redis.call('GET', KEYS[1]) or '0')
        local due = last + tonumber(ARGV[2])
        if due > tonumber(ARGV[1]) then return due - tonumber(ARGV[1]) end
        return 0
        """;

    /// <summary>
    /// For slow senders (a long code at 1/s): a message also waits a full interval after the previous
    /// message's answer. Slots space the starts; a slow first request (a new connection) would
    /// otherwise arrive late and land too close to the next one at the provider.
    /// </summary>
    public async Task<TimeSpan> PaceAsync(string tenant, string accountId, double messagesPerSecond, DateTimeOffset now)
    {
        if (messagesPerSecond >= StrictPacingBelow) return TimeSpan.Zero;
        var interval = Interval(messagesPerSecond);
        var wait = (long)await redis.GetDatabase().ScriptEvaluateAsync(PaceScript, [LastAnswerKey(tenant, accountId)], [Micros(now), interval]);
        return TimeSpan.FromTicks(wait * 10);
    }

    public async Task AnsweredAsync(string tenant, string accountId, double messagesPerSecond, DateTimeOffset at)
    {
        if (messagesPerSecond >= StrictPacingBelow) return;
        await redis.GetDatabase().ScriptEvaluateAsync(
            "local v = tonumber(redis.call('GET', KEYS[1]) or '0') if tonumber(ARGV[1]) > v then redis.call('SET', KEYS[1], ARGV[1], 'PX', 600000) end return 0",
            [LastAnswerKey(tenant, accountId)], [Micros(at)]);
    }

    /// <summary>
    /// Microseconds between two slots, 10% under the rate: a message delayed on its way must not bring
    /// the next one too close at the provider. Rounded up, after dropping floating-point dust (at
    /// 100,000/s, 11.000000000000002 µs must be 11, not 12).
    /// </summary>
    public static long Interval(double messagesPerSecond) => (long)Math.Ceiling(Math.Round(1_000_000.0 / messagesPerSecond * 1.1, 6));

    private RedisKey LastAnswerKey(string tenant, string accountId) => $"{options.RedisKeyPrefix}{{p:{tenant}:{accountId}}}:answered";

    private static long Micros(DateTimeOffset t) => (t - DateTimeOffset.UnixEpoch).Ticks / 10;
}
