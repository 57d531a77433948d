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

    /// <summary>
    /// How long a worker holds the messages it claimed. A worker that stopped (crashed, killed, its node
    /// gone) lets go of its messages when this runs out; longer than any one run of the pipeline takes.
    /// </summary>
    public TimeSpan ClaimLease { get; set; } = TimeSpan.FromMinutes(2);

    /// <summary>How often messages whose worker stopped (their claim ran out) are looked for; see StrandedMessages.</summary>
    public TimeSpan StrandedCheckInterval { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>After this many provider attempts a message that keeps failing transiently is failed.</summary>
    public int MaxAttempts { get; set; } = 5;

    /// <summary>
    /// Batches of DeliverMessage commands a replica works on at once. Each holds a database connection
    /// for its steps; more than a few per core only adds contention.
    /// </summary>
    public int CommandConcurrency { get; set; } = 4;

    /// <summary>
    /// DeliverMessage commands taken into one run of the pipeline. Each run costs a fixed round of
    /// statements, so a campaign's many small commands go much further together.
    /// </summary>
    public int CommandsPerBatch { get; set; } = 10;

    /// <summary>How long a batch waits for more commands after its first one before it runs.</summary>
    public TimeSpan CommandBatchWait { get; set; } = TimeSpan.FromMilliseconds(20);

    /// <summary>Messages of one run of the pipeline sent to providers at once.</summary>
    public int Concurrency { get; set; } = 16;

    /// <summary>Allows provider accounts of kind "noop" (benchmarks, load tests).</summary>
    public bool AllowNoopProvider { get; set; }

    /// <summary>Base URL of this service's public HTTP endpoint, for provider status callbacks (optional).</summary>
    public string PublicBaseUrl { get; set; } = "";
}
