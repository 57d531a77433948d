namespace Crm.Campaigns.Features.Reports;

/// <summary>
/// A variant's conversion rate against the holdout's: the difference with its 95% confidence interval (the
/// two-proportion z-interval, unpooled standard error), the relative lift, and the two-sided p-value of the
/// two-proportion z-test (pooled standard error). Significant when the interval excludes zero.
/// </summary>
public sealed record LiftResult(double Absolute, double Relative, double CiLow, double CiHigh, double PValue, bool Significant)
{
    /// <summary>z for a two-sided 95% interval.</summary>
    public const double Z95 = 1.959963984540054;

    /// <returns>null when either group has no one (there is nothing to compare).</returns>
    public static LiftResult? Compute(long variantConverted, long variantSize, long holdoutConverted, long holdoutSize)
    {
        if (variantSize <= 0 || holdoutSize <= 0) return null;
        double p1 = (double)variantConverted / variantSize, p0 = (double)holdoutConverted / holdoutSize;
        var diff = p1 - p0;
        var se = Math.Sqrt(p1 * (1 - p1) / variantSize + p0 * (1 - p0) / holdoutSize);
        var pooled = (double)(variantConverted + holdoutConverted) / (variantSize + holdoutSize);
        var sePooled = Math.Sqrt(pooled * (1 - pooled) * (1.0 / variantSize + 1.0 / holdoutSize));
        var pValue = sePooled == 0 ? 1.0 : Math.Min(1.0, Erfc(Math.Abs(diff / sePooled) / Math.Sqrt(2)));
        double low = diff - Z95 * se, high = diff + Z95 * se;
        // No holdout conversions: a relative lift is undefined; reported as 0 (the absolute lift still says it).
        var relative = p0 == 0 ? 0 : diff / p0;
        return new LiftResult(diff, relative, low, high, pValue, low > 0 || high < 0);
    }

    /// <summary>The complementary error function: Numerical Recipes' erfcc, a Chebyshev fit with fractional error below 1.2e-7.</summary>
    internal static double Erfc(double x)
    {
        var z = Math.Abs(x);
        var t = 1.0 / (1.0 + 0.5 * z);
        var r = t * Math.Exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 +
            t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))));
        return x >= 0 ? r : 2.0 - r;
    }
}
