using Crm.Delivery.Channels;
using Crm.Delivery.Features.Webhooks;
using Microsoft.Extensions.Options;

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

    /// <summary>
    /// Lets tenants' provider endpoints (Twilio base URL, SMTP host) be loopback, private or link-local
    /// addresses. Off in production: a tenant must not reach the platform's own network or the cloud metadata
    /// endpoint through us. On for a self-hosted relay on a private network, and for the loopback fakes.
    /// </summary>
    public bool AllowPrivateProviderAddresses { get; set; }

    /// <summary>Tenants whose policy (settings, caps, accounts) is kept in memory at once, per replica.</summary>
    public int PolicyCacheSize { get; set; } = 10_000;

    /// <summary>The senders' in-call retries (Delivery:Retry).</summary>
    public RetryOptions Retry { get; set; } = new();

    /// <summary>Customer webhooks' dispatcher (Delivery:Webhooks).</summary>
    public WebhookOptions Webhooks { get; set; } = new();

    /// <summary>Open and click tracking and the platform's unsubscribe link (Delivery:Tracking).</summary>
    public Features.Tracking.TrackingOptions Tracking { get; set; } = new();

    /// <summary>Amazon SES bounce and complaint notifications through SNS (Delivery:Sns).</summary>
    public Channels.Email.SnsOptions Sns { get; set; } = new();
}

/// <summary>Checked at start-up (ValidateOnStart): a missing key or a malformed setting stops the service, naming the setting.</summary>
public sealed class DeliveryOptionsValidator : IValidateOptions<DeliveryOptions>
{
    public ValidateOptionsResult Validate(string? name, DeliveryOptions o)
    {
        var failures = new List<string>();
        void Check(bool ok, string setting, string problem)
        {
            if (!ok) failures.Add($"{DeliveryOptions.Section}:{setting} {problem}");
        }

        Check(IsKey(o.SecretKey), nameof(o.SecretKey), "is required: the base64 of 32 random bytes (provider secrets are encrypted with it)");
        Check(o.MaxInlineThrottleWait >= TimeSpan.Zero, nameof(o.MaxInlineThrottleWait), "must not be negative");
        Check(o.DeferredPollInterval > TimeSpan.Zero, nameof(o.DeferredPollInterval), "must be positive");
        Check(o.MaxAttempts >= 1, nameof(o.MaxAttempts), "must be at least 1");
        Check(o.CommandConcurrency >= 1, nameof(o.CommandConcurrency), "must be at least 1");
        Check(o.CommandsPerBatch >= 1, nameof(o.CommandsPerBatch), "must be at least 1");
        Check(o.CommandBatchWait >= TimeSpan.Zero, nameof(o.CommandBatchWait), "must not be negative");
        Check(o.Concurrency >= 1, nameof(o.Concurrency), "must be at least 1");
        Check(o.PolicyCacheSize >= 1, nameof(o.PolicyCacheSize), "must be at least 1");
        Check(o.PublicBaseUrl.Length == 0
              || (Uri.TryCreate(o.PublicBaseUrl, UriKind.Absolute, out var u) && u.Scheme is "http" or "https"),
            nameof(o.PublicBaseUrl), $"'{o.PublicBaseUrl}' is not an absolute http(s) URL");
        var r = o.Retry;
        Check(r.MaxAttempts >= 1, "Retry:MaxAttempts", "must be at least 1");
        Check(r.BaseDelay >= TimeSpan.Zero, "Retry:BaseDelay", "must not be negative");
        Check(r.MaxDelay >= r.BaseDelay, "Retry:MaxDelay", "must not be shorter than Retry:BaseDelay");
        Check(r.MaxRetryAfter >= TimeSpan.Zero, "Retry:MaxRetryAfter", "must not be negative");
        Check(r.RequestTimeout > TimeSpan.Zero || r.RequestTimeout == Timeout.InfiniteTimeSpan, "Retry:RequestTimeout", "must be positive");
        var w = o.Webhooks;
        Check(w.Schedule.All(d => d > TimeSpan.Zero), "Webhooks:RetrySchedule", "must hold positive durations");
        Check(w.RequestTimeout > TimeSpan.Zero, "Webhooks:RequestTimeout", "must be positive");
        Check(w.MaxRetryAfter >= TimeSpan.Zero, "Webhooks:MaxRetryAfter", "must not be negative");
        Check(w.PollInterval > TimeSpan.Zero, "Webhooks:PollInterval", "must be positive");
        Check(w.BatchSize >= 1, "Webhooks:BatchSize", "must be at least 1");
        Check(w.Concurrency >= 1, "Webhooks:Concurrency", "must be at least 1");
        var t = o.Tracking;
        Check(t.BaseUrl.Length == 0 || (Uri.TryCreate(t.BaseUrl, UriKind.Absolute, out var tu) && tu.Scheme == "https" && tu.Query.Length == 0),
            "Tracking:BaseUrl", $"'{t.BaseUrl}' is not an absolute https URL (one-click unsubscribe links must be https)");
        Check(t.BaseUrl.Length == 0 || IsKey(t.SigningKey), "Tracking:SigningKey",
            "is required with Tracking:BaseUrl: the base64 of 32 random bytes (tracking and unsubscribe links are signed with it)");
        Check(t.MachineOpenWindow >= TimeSpan.Zero, "Tracking:MachineOpenWindow", "must not be negative");
        Check(o.Sns.MaxAge > TimeSpan.Zero, "Sns:MaxAge", "must be positive");
        Check(o.Sns.CertificateHosts.All(h => h.Length > 0 && Uri.CheckHostName(h.Split(':')[0]) != UriHostNameType.Unknown), "Sns:CertificateHosts",
            "must hold host names (host or host:port)");
        Check(w.RetainFor > TimeSpan.Zero, "Webhooks:RetainFor", "must be positive");
        Check(w.CleanupInterval > TimeSpan.Zero, "Webhooks:CleanupInterval", "must be positive");
        Check(w.CleanupBatchSize >= 1, "Webhooks:CleanupBatchSize", "must be at least 1");
        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }

    private static bool IsKey(string base64)
    {
        var bytes = new byte[64];
        return Convert.TryFromBase64String(base64, bytes, out var length) && length == 32;
    }
}
