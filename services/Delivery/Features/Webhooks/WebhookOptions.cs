namespace Crm.Delivery.Features.Webhooks;

/// <summary>Delivery:Webhooks — the dispatcher of customer webhooks.</summary>
public sealed class WebhookOptions
{
    /// <summary>
    /// Standard Webhooks' (Svix's) schedule, stretched to about three days: after the first attempt fails,
    /// the waits before each next one (each ±20% jitter). When it runs out the delivery fails for good.
    /// </summary>
    public static readonly TimeSpan[] DefaultRetrySchedule =
    [
        TimeSpan.FromSeconds(5), TimeSpan.FromMinutes(5), TimeSpan.FromMinutes(30), TimeSpan.FromHours(2), TimeSpan.FromHours(5),
        TimeSpan.FromHours(10), TimeSpan.FromHours(10), TimeSpan.FromHours(10), TimeSpan.FromHours(10), TimeSpan.FromHours(10), TimeSpan.FromHours(10),
    ];

    /// <summary>Overrides <see cref="DefaultRetrySchedule"/> (tests use milliseconds).</summary>
    public TimeSpan[]? RetrySchedule { get; set; }

    public IReadOnlyList<TimeSpan> Schedule => RetrySchedule is { Length: > 0 } s ? s : DefaultRetrySchedule;

    /// <summary>How long one attempt may take, connection to last byte of the answer.</summary>
    public TimeSpan RequestTimeout { get; set; } = TimeSpan.FromSeconds(15);

    /// <summary>A longer Retry-After than this is cut to it.</summary>
    public TimeSpan MaxRetryAfter { get; set; } = TimeSpan.FromHours(24);

    /// <summary>How often due deliveries are looked for when the queue was empty.</summary>
    public TimeSpan PollInterval { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>Deliveries claimed at once, and how many of them are in flight together.</summary>
    public int BatchSize { get; set; } = 200;

    public int Concurrency { get; set; } = 32;

    /// <summary>How long delivered and permanently failed deliveries are kept (<see cref="WebhookRetention"/>), as the outbox's rows are.</summary>
    public TimeSpan RetainFor { get; set; } = TimeSpan.FromDays(7);

    public TimeSpan CleanupInterval { get; set; } = TimeSpan.FromMinutes(10);

    /// <summary>Rows deleted per transaction, so a large backlog never holds locks for long.</summary>
    public int CleanupBatchSize { get; set; } = 1000;
}
