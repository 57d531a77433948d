using System.Net.Http.Headers;

namespace Crm.Delivery.Channels;

/// <summary>
/// The waiting half of the senders' in-call retries: back-off with full jitter, Retry-After, and the
/// wait itself. Kept apart from <see cref="RetryOptions"/> so tests can replace the clock and the delay
/// and never sleep for real.
/// </summary>
public sealed class RetryPolicy
{
    // 2^30 × any sane BaseDelay is far beyond any MaxDelay; the cap only keeps the arithmetic finite.
    private const int MaxExponent = 30;

    private readonly Func<TimeSpan, CancellationToken, Task> _delay;
    private readonly TimeProvider _time;

    /// <param name="delay">How to wait; defaults to <see cref="Task.Delay(TimeSpan, CancellationToken)"/>.</param>
    /// <param name="time">The clock for Retry-After given as an HTTP date; defaults to the system clock.</param>
    public RetryPolicy(RetryOptions options, Func<TimeSpan, CancellationToken, Task>? delay = null, TimeProvider? time = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        Options = options;
        _delay = delay ?? Task.Delay;
        _time = time ?? TimeProvider.System;
    }

    public RetryOptions Options { get; }

    /// <summary>At least one attempt, whatever the options say.</summary>
    public int MaxAttempts => Math.Max(1, Options.MaxAttempts);

    /// <summary>
    /// Full jitter (uniform in [0, min(MaxDelay, BaseDelay·2^<paramref name="retry"/>)]): many senders that
    /// failed together do not come back together.
    /// </summary>
    /// <param name="retry">0 before the first retry, 1 before the second...</param>
    public TimeSpan Backoff(int retry)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(retry);
        var exponential = Options.BaseDelay.Ticks * Math.Pow(2, Math.Min(retry, MaxExponent));
        var cap = Math.Min(exponential, Options.MaxDelay.Ticks);
        return TimeSpan.FromTicks((long)(Random.Shared.NextDouble() * Math.Max(0, cap)));
    }

    /// <summary>The wait a Retry-After header asks for (delta-seconds or HTTP date), null without one.</summary>
    public TimeSpan? RetryAfter(RetryConditionHeaderValue? header)
    {
        if (header?.Delta is { } delta)
        {
            return delta < TimeSpan.Zero ? TimeSpan.Zero : delta;
        }
        if (header?.Date is { } date)
        {
            var wait = date - _time.GetUtcNow();
            return wait < TimeSpan.Zero ? TimeSpan.Zero : wait;
        }
        return null;
    }

    /// <summary>True when the provider's Retry-After is short enough to wait for inside this call.</summary>
    public bool CanWaitFor(TimeSpan retryAfter) => retryAfter <= Options.MaxRetryAfter;

    public Task WaitAsync(TimeSpan delay, CancellationToken ct) => _delay(delay, ct);

    /// <summary>
    /// Runs <paramref name="attempt"/> until it is final or <see cref="MaxAttempts"/> are spent, waiting
    /// the provider's Retry-After or the back-off in between. Every sender's loop.
    /// </summary>
    public async Task<SendOutcome> RunAsync(Func<CancellationToken, Task<ProviderAttempt>> attempt, CancellationToken ct)
    {
        for (var n = 1; ; n++)
        {
            var result = await attempt(ct).ConfigureAwait(false);
            if (result.Outcome is { } final)
            {
                return final with { Attempts = n };
            }
            if (n >= MaxAttempts)
            {
                return new SendOutcome(SendOutcomeKind.Transient, $"{result.Reason} (gave up after {n} attempts)",
                    ProviderErrorCode: result.ErrorCode, RetryAfter: result.RetryAfter, Attempts: n);
            }
            await WaitAsync(result.RetryAfter ?? Backoff(n - 1), ct).ConfigureAwait(false);
        }
    }
}

/// <summary>One call to a provider: either final (<see cref="Outcome"/> set) or worth retrying.</summary>
public sealed record ProviderAttempt(SendOutcome? Outcome, string Reason, TimeSpan? RetryAfter, int? ErrorCode)
{
    public static ProviderAttempt Final(SendOutcome outcome) => new(outcome, outcome.Reason, null, null);

    public static ProviderAttempt Retry(string reason, TimeSpan? retryAfter = null, int? errorCode = null) =>
        new(null, reason, retryAfter, errorCode);
}
