namespace Crm.Fakes.Twilio;

/// <summary>Pacing assertions over recorded requests, e.g. "never more than 1 message per second per From".</summary>
/// <example><code>
/// var worst = twilio.Requests.Where(r => r.MessageSid is not null)
///     .GroupBy(r => r.From).Max(g => g.MaxInWindow(TimeSpan.FromSeconds(1)));
/// Assert.True(worst &lt;= 1);
/// </code></example>
public static class TwilioRequestStats
{
    /// <summary>The largest number of requests that arrived within any half-open window [t, t + window).</summary>
    public static int MaxInWindow(this IEnumerable<TwilioRequest> requests, TimeSpan window)
    {
        ArgumentNullException.ThrowIfNull(requests);
        var arrivals = requests.Select(r => r.SinceStart).Order().ToArray();
        var max = 0;
        var first = 0;
        for (var last = 0; last < arrivals.Length; last++)
        {
            while (arrivals[last] - arrivals[first] >= window)
            {
                first++;
            }
            max = Math.Max(max, last - first + 1);
        }
        return max;
    }

    /// <summary>The shortest time between two consecutive arrivals, or null for fewer than two requests.</summary>
    public static TimeSpan? MinInterval(this IEnumerable<TwilioRequest> requests)
    {
        ArgumentNullException.ThrowIfNull(requests);
        var arrivals = requests.Select(r => r.SinceStart).Order().ToArray();
        return arrivals.Length < 2 ? null : arrivals.Zip(arrivals.Skip(1), (a, b) => b - a).Min();
    }
}
