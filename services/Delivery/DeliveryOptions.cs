namespace Crm.Delivery;

public sealed class DeliveryOptions
{
    public const string Section = "Delivery";

    /// <summary>Base64 of 32 random bytes: the key provider secrets are encrypted with.</summary>
    public string SecretKey { get; set; } = "";

    /// <summary>Prepended to every Redis key (tests use one per fixture).</summary>
    public string RedisKeyPrefix { get; set; } = "";

    /// <summary>A throttle wait up to this long is waited out; a longer one defers the message.</summary>
    public TimeSpan MaxInlineThrottleWait { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>How often deferred messages that came due are claimed.</summary>
    public TimeSpan DeferredPollInterval { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>After this many provider attempts a message that keeps failing transiently is failed.</summary>
    public int MaxAttempts { get; set; } = 5;

    /// <summary>
    /// DeliverMessage commands (batches) a replica works on at once. Each holds a database connection
    /// for its steps; more than a few per core only adds contention.
    /// </summary>
    public int CommandConcurrency { get; set; } = 16;

    /// <summary>Messages of one DeliverMessage command processed at once.</summary>
    public int Concurrency { get; set; } = 16;

    /// <summary>Allows provider accounts of kind "noop" (benchmarks, load tests).</summary>
    public bool AllowNoopProvider { get; set; }

    /// <summary>Base URL of this service's public HTTP endpoint, for provider status callbacks (optional).</summary>
    public string PublicBaseUrl { get; set; } = "";
}
