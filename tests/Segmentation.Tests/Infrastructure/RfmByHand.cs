namespace Crm.Segmentation.Tests.Infrastructure;

/// <summary>
/// RFM as issue 9 defines it, computed in plain C# (no SQL) so the service's figures can be checked against
/// it: over completed orders with as_of − window ≤ occurred_at &lt; as_of, per customer recency = whole days
/// (24 h) since the last order, frequency = the orders, monetary = their total; breakpoints are
/// percentile_disc(0.2, 0.4, 0.6, 0.8), i.e. the first value (ascending) whose position k satisfies k / n ≥ p;
/// F and M score 1 + breakpoints strictly below, R 5 − breakpoints strictly below the days.
/// </summary>
public static class RfmByHand
{
    public sealed record Order(string Customer, DateTime OccurredAtUtc, decimal Total, bool Completed);

    public sealed record Score(string Customer, int RecencyDays, long Frequency, decimal Monetary, int R, int F, int M, string Segment);

    public sealed record Segment(string Name, int RMin, int RMax, int FMin, int FMax, int MMin, int MMax);

    /// <summary>The table as issue 9 gives it (the rfm R package's), typed in from the issue, not taken from the service.</summary>
    public static readonly Segment[] IssueTable =
    [
        new("Champions", 5, 5, 5, 5, 5, 5),
        new("Potential Loyalist", 3, 5, 3, 5, 2, 5),
        new("Loyal Customers", 2, 4, 2, 4, 2, 4),
        new("Promising", 3, 4, 1, 3, 3, 5),
        new("New Customers", 4, 5, 1, 3, 1, 5),
        new("Can't Lose Them", 1, 2, 3, 4, 4, 5),
        new("At Risk", 1, 2, 2, 5, 4, 5),
        new("Need Attention", 1, 3, 3, 5, 3, 5),
        new("About To Sleep", 2, 3, 1, 3, 1, 4),
        new("Lost", 1, 1, 1, 5, 1, 5),
    ];

    public sealed record Result(IReadOnlyDictionary<string, Score> Scores, int[] RecencyBreakpoints, long[] FrequencyBreakpoints, decimal[] MonetaryBreakpoints);

    public static Result Compute(IEnumerable<Order> orders, DateTime asOfUtc, int windowDays, IReadOnlyList<Segment>? table = null)
    {
        table ??= IssueTable;
        var since = asOfUtc.AddDays(-windowDays);
        var measured = orders
            .Where(o => o.Completed && o.OccurredAtUtc >= since && o.OccurredAtUtc < asOfUtc)
            .GroupBy(o => o.Customer)
            .Select(g => (Customer: g.Key,
                Days: (int)((asOfUtc - g.Max(o => o.OccurredAtUtc)).Ticks / TimeSpan.TicksPerDay),
                Frequency: (long)g.Count(),
                Monetary: g.Sum(o => o.Total)))
            .ToList();
        if (measured.Count == 0) return new Result(new Dictionary<string, Score>(), [], [], []);
        var r = Breakpoints(measured.Select(x => x.Days));
        var f = Breakpoints(measured.Select(x => x.Frequency));
        var m = Breakpoints(measured.Select(x => x.Monetary));
        var scores = measured.Select(x =>
        {
            var rs = 5 - r.Count(b => b < x.Days);
            var fs = 1 + f.Count(b => b < x.Frequency);
            var ms = 1 + m.Count(b => b < x.Monetary);
            var name = table.FirstOrDefault(s => rs >= s.RMin && rs <= s.RMax && fs >= s.FMin && fs <= s.FMax && ms >= s.MMin && ms <= s.MMax)?.Name ?? "Others";
            return new Score(x.Customer, x.Days, x.Frequency, x.Monetary, rs, fs, ms, name);
        }).ToDictionary(s => s.Customer);
        return new Result(scores, r, f, m);
    }

    /// <summary>percentile_disc at 20, 40, 60 and 80 %: the k-th smallest value, k the least with k / n ≥ p (k = ⌈q·n / 5⌉ for p = q / 5).</summary>
    public static T[] Breakpoints<T>(IEnumerable<T> values)
    {
        var sorted = values.Order().ToArray();
        var n = sorted.Length;
        return [.. Enumerable.Range(1, 4).Select(q => sorted[Math.Max(1, (q * n + 4) / 5) - 1])];
    }

    public sealed record SegmentFigures(string Name, long Contacts, decimal Revenue, decimal RevenueShare, decimal AverageOrderValue, double MedianDays);

    public sealed record Report(long Customers, decimal Revenue, decimal TopShare, IReadOnlyList<SegmentFigures> Segments);

    /// <summary>
    /// The report's figures: per segment its contacts, revenue, share of all revenue, revenue per order and
    /// the median of its contacts' recency days (the mean of the middle two for an even count); the share of
    /// revenue of the top ⌈20 %⌉ of customers by monetary value.
    /// </summary>
    public static Report Figures(Result result, IReadOnlyList<Segment>? table = null)
    {
        table ??= IssueTable;
        var all = result.Scores.Values.ToList();
        var revenue = all.Sum(s => s.Monetary);
        var top = all.Select(s => s.Monetary).OrderDescending().Take((all.Count + 4) / 5).Sum();
        var segments = table.Select(s => s.Name).Append("Others").Select(name =>
        {
            var members = all.Where(s => s.Segment == name).ToList();
            var segmentRevenue = members.Sum(s => s.Monetary);
            var orders = members.Sum(s => s.Frequency);
            var days = members.Select(s => s.RecencyDays).Order().ToArray();
            var median = days.Length == 0 ? 0 : days.Length % 2 == 1 ? days[days.Length / 2] : (days[days.Length / 2 - 1] + days[days.Length / 2]) / 2.0;
            return new SegmentFigures(name, members.Count, segmentRevenue, revenue == 0 ? 0 : segmentRevenue / revenue,
                orders == 0 ? 0 : segmentRevenue / orders, median);
        }).ToList();
        return new Report(all.Count, revenue, revenue == 0 ? 0 : top / revenue, segments);
    }
}
