using Crm.Delivery.Pipeline;

namespace Crm.Delivery.Tests;

public sealed class ProviderThrottleIntervalTests
{
    [Theory]
    [InlineData(1, 1_100_000)]          // a Twilio long code: one message every 1.1 s
    [InlineData(100, 11_000)]           // a short code
    [InlineData(3, 366_667)]            // rounded up, never faster than the rate
    [InlineData(100_000, 11)]           // the highest rate an account may have: not 12 from floating-point dust
    public void Should_space_slots_ten_percent_under_the_rate(double perSecond, long micros) =>
        Assert.Equal(micros, ProviderThrottle.Interval(perSecond));
}
