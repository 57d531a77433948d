using System.Globalization;
using System.Text;

namespace Crm.Campaigns.Features.Reports;

/// <summary>
/// The report as CSV (RFC 4180). A text cell that starts with =, +, -, @, a tab or a carriage return is
/// prefixed with a single quote, so a spreadsheet shows it as text instead of running it as a formula
/// (a variant or campaign name is the marketer's text, and reports travel). Numbers the service formats
/// itself (invariant culture) are written as numbers: a negative lift stays a number.
/// </summary>
public static class ReportCsv
{
    public static readonly string[] Header =
    [
        "campaign", "run_id", "variant_id", "name", "holdout", "recipients", "sent", "delivered", "opened", "machine_opened", "clicked",
        "converted", "conversion_rate", "currency", "revenue", "revenue_per_recipient", "lift_absolute", "lift_relative", "lift_ci_low",
        "lift_ci_high", "p_value", "significant",
    ];

    public static IEnumerable<string> Lines(ReportEngine.Report report)
    {
        yield return string.Join(',', Header);
        foreach (var (g, lift) in report.Groups)
        {
            string[] cells =
            [
                Text(report.CampaignName), report.RunId?.ToString() ?? "", Text(g.VariantId), Text(g.Name), g.Holdout ? "true" : "false",
                Number(g.Recipients), Number(g.Sent), Number(g.Delivered), Number(g.Opened), Number(g.MachineOpened), Number(g.Clicked),
                Number(g.Converted), Number(g.ConversionRate), Text(report.Currency), Number(g.Revenue), Number(g.RevenuePerRecipient),
                lift is null ? "" : Number(lift.Absolute), lift is null ? "" : Number(lift.Relative), lift is null ? "" : Number(lift.CiLow),
                lift is null ? "" : Number(lift.CiHigh), lift is null ? "" : Number(lift.PValue), lift is null ? "" : lift.Significant ? "true" : "false",
            ];
            yield return string.Join(',', cells);
        }
    }

    /// <summary>Neutralises a formula trigger, then quotes what needs quoting.</summary>
    public static string Text(string? value)
    {
        var s = value ?? "";
        if (s.Length > 0 && s[0] is '=' or '+' or '-' or '@' or '\t' or '\r') s = "'" + s;
        return s.IndexOfAny([',', '"', '\r', '\n']) >= 0 ? "\"" + s.Replace("\"", "\"\"") + "\"" : s;
    }

    private static string Number(long v) => v.ToString(CultureInfo.InvariantCulture);
    private static string Number(decimal v) => v.ToString(CultureInfo.InvariantCulture);
    private static string Number(double v) => v.ToString("R", CultureInfo.InvariantCulture);

    /// <summary>The lines in chunks of about <paramref name="chunkChars"/> characters, each ending with a line break.</summary>
    public static IEnumerable<string> Chunks(ReportEngine.Report report, int chunkChars = 64 * 1024)
    {
        var sb = new StringBuilder();
        foreach (var line in Lines(report))
        {
            sb.Append(line).Append("\r\n");
            if (sb.Length < chunkChars) continue;
            yield return sb.ToString();
            sb.Clear();
        }
        if (sb.Length > 0) yield return sb.ToString();
    }
}
