using System.Globalization;
using System.Net.Http.Headers;
using Crm.Delivery.Channels;

namespace Crm.Delivery.Tests.Channels;

public sealed class RetryPolicyTests
{
    [Fact]
    public void Backoff_is_full_jitter_under_an_exponential_cap()
    {
        var options = new RetryOptions { BaseDelay = TimeSpan.FromMilliseconds(100), MaxDelay = TimeSpan.FromMilliseconds(350) };
        var policy = new RetryPolicy(options);

        for (var retry = 0; retry < 40; retry++)
        {
            var cap = TimeSpan.FromMilliseconds(Math.Min(100 * Math.Pow(2, retry), 350));
            for (var sample = 0; sample < 50; sample++)
            {
                Assert.InRange(policy.Backoff(retry), TimeSpan.Zero, cap);
            }
        }
        // Jitter: not every wait is the cap.
        Assert.Contains(Enumerable.Range(0, 50).Select(_ => policy.Backoff(5)), d => d < TimeSpan.FromMilliseconds(340));
    }

    [Fact]
    public void Retry_After_is_read_as_seconds_or_as_an_HTTP_date()
    {
        var now = new DateTimeOffset(2025, 3, 1, 9, 0, 0, TimeSpan.Zero);
        var policy = new RetryPolicy(new RetryOptions(), time: new FixedClock(now));

        Assert.Equal(TimeSpan.FromSeconds(7), policy.RetryAfter(Header("7")));
        Assert.Equal(TimeSpan.FromSeconds(90), policy.RetryAfter(Header(now.AddSeconds(90).ToString("r", CultureInfo.InvariantCulture))));
        Assert.Equal(TimeSpan.Zero, policy.RetryAfter(Header(now.AddSeconds(-5).ToString("r", CultureInfo.InvariantCulture))));
        Assert.Null(policy.RetryAfter(null));
    }

    private static RetryConditionHeaderValue Header(string value) =>
        RetryConditionHeaderValue.Parse(value);

    private sealed class FixedClock(DateTimeOffset now) : TimeProvider
    {
        public override DateTimeOffset GetUtcNow() => now;
    }
}
