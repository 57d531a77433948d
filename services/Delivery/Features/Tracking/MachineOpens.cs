namespace Crm.Delivery.Features.Tracking;

/// <summary>
/// Whether an open was a machine's rather than a person's, as Braze and Customer.io flag them. Apple Mail Privacy
/// Protection fetches every image through Apple's proxy when the mail arrives, announcing itself only as
/// "Mozilla/5.0"; security gateways and link scanners prefetch too. The rule: an open is a machine open when
/// (1) its user agent is missing, is exactly "Mozilla/5.0" (Apple's proxy), or names a known prefetcher or
/// scanner, or (2) it comes within Delivery:Tracking:MachineOpenWindow (10 s) of the message being sent —
/// nobody reads a mail that fast. Gmail's and Yahoo's image proxies fetch when the person opens the mail, so
/// they count as people.
/// </summary>
public static class MachineOpens
{
    private static readonly string[] Prefetchers =
    [
        "Barracuda", "Mimecast", "Proofpoint", "Symantec", "Zscaler", "Forcepoint", "Trend Micro", "Sophos",
        "bot", "crawler", "spider", "HeadlessChrome", "python-requests", "curl/", "Go-http-client", "Java/", "okhttp",
    ];

    public static bool IsMachine(string? userAgent, DateTime? sentAt, DateTimeOffset openedAt, TimeSpan window)
    {
        var ua = userAgent?.Trim() ?? "";
        if (ua.Length == 0 || ua == "Mozilla/5.0") return true;
        if (Prefetchers.Any(p => ua.Contains(p, StringComparison.OrdinalIgnoreCase))) return true;
        return sentAt is { } sent && openedAt.UtcDateTime - DateTime.SpecifyKind(sent, DateTimeKind.Utc) < window;
    }
}
