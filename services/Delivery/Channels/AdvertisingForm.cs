namespace Crm.Delivery.Channels;

/// <summary>
/// The marks the law and the mailbox providers require on marketing messages: Korea's advertising SMS
/// form (정보통신망법 §50: "(광고)" and the sender first, a free opt-out number last) and email's
/// List-Unsubscribe (RFC 2369) with one-click unsubscribe (RFC 8058).
/// </summary>
public static class AdvertisingForm
{
    public const string KoreanAdPrefix = "(광고)";
    public const string KoreanOptOutLabel = "무료수신거부";

    public const string ListUnsubscribe = "List-Unsubscribe";
    public const string ListUnsubscribePost = "List-Unsubscribe-Post";

    /// <summary>RFC 8058 §3.1: the single value List-Unsubscribe-Post may carry.</summary>
    public const string OneClick = "List-Unsubscribe=One-Click";

    /// <summary>
    /// "(광고)" + sender + "\n" + body + "\n무료수신거부 " + number. Idempotent: a body that already starts with
    /// "(광고)" is taken as formatted and only gets the opt-out line if it lacks one, so a template that
    /// carries the marks itself (or a retried pipeline step) never doubles them.
    /// </summary>
    public static string KoreanSmsAd(string body, string senderName, string optOutNumber)
    {
        ArgumentNullException.ThrowIfNull(body);
        ArgumentException.ThrowIfNullOrWhiteSpace(senderName);
        ArgumentException.ThrowIfNullOrWhiteSpace(optOutNumber);
        var optOut = $"{KoreanOptOutLabel} {optOutNumber}";
        if (body.StartsWith(KoreanAdPrefix, StringComparison.Ordinal))
        {
            return body.Contains(KoreanOptOutLabel, StringComparison.Ordinal) ? body : $"{body}\n{optOut}";
        }
        return $"{KoreanAdPrefix}{senderName}\n{body}\n{optOut}";
    }

    /// <summary>
    /// The text of a KakaoTalk FriendTalk advertisement, sent with isAd: KakaoTalk itself shows "(광고)" above it
    /// (and the channel-block link that is its opt-out), so a "(광고)" the template already starts with is taken
    /// off rather than shown twice.
    /// </summary>
    public static string KakaoFriendTalk(string body)
    {
        ArgumentNullException.ThrowIfNull(body);
        return body.StartsWith(KoreanAdPrefix, StringComparison.Ordinal) ? body[KoreanAdPrefix.Length..].TrimStart() : body;
    }

    /// <summary>
    /// <c>List-Unsubscribe: &lt;https://...&gt;, &lt;mailto:...&gt;</c> (the HTTPS URI first: RFC 2369 lists
    /// alternatives in order of preference), plus <c>List-Unsubscribe-Post: List-Unsubscribe=One-Click</c>
    /// only when there is an HTTPS URI, which RFC 8058 requires for one-click. Empty when both are null.
    /// </summary>
    /// <param name="httpsUrl">The one-click endpoint; it must identify recipient and list by itself (RFC 8058 §3.1).</param>
    /// <param name="mailto">An address or a mailto: URI (RFC 2369 recommends offering one).</param>
    /// <exception cref="ArgumentException">A URL that is not https (resp. mailto), or has characters that cannot
    /// stand inside the angle brackets (whitespace, &lt; &gt;, non-ASCII: RFC 2369 §2).</exception>
    /// <remarks>One-click also needs both headers covered by a DKIM signature (RFC 8058 §4); that is the
    /// signing MTA's job, not this helper's.</remarks>
    public static IReadOnlyDictionary<string, string> UnsubscribeHeaders(string? httpsUrl, string? mailto)
    {
        var uris = new List<string>(2);
        if (httpsUrl is not null)
        {
            if (!Uri.TryCreate(httpsUrl, UriKind.Absolute, out var uri) || uri.Scheme != Uri.UriSchemeHttps)
            {
                throw new ArgumentException($"'{httpsUrl}' is not an absolute https URL.", nameof(httpsUrl));
            }
            uris.Add(Bracketable(httpsUrl, nameof(httpsUrl)));
        }
        if (mailto is not null)
        {
            var mailtoUri = MailtoUri(mailto);
            if (!mailtoUri.Contains('@', StringComparison.Ordinal))
            {
                throw new ArgumentException($"'{mailto}' is not a mailto address.", nameof(mailto));
            }
            uris.Add(Bracketable(mailtoUri, nameof(mailto)));
        }

        var headers = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        if (uris.Count > 0)
        {
            headers[ListUnsubscribe] = string.Join(", ", uris.Select(u => $"<{u}>"));
        }
        if (httpsUrl is not null)
        {
            headers[ListUnsubscribePost] = OneClick;
        }
        return headers;
    }

    /// <summary>An address as a mailto: URI (a mailto: URI as it is).</summary>
    public static string MailtoUri(string mailto) =>
        mailto.StartsWith("mailto:", StringComparison.OrdinalIgnoreCase) ? mailto : "mailto:" + mailto;

    private static string Bracketable(string uri, string parameter) =>
        uri.All(c => c is > ' ' and <= '~' and not '<' and not '>')
            ? uri
            : throw new ArgumentException($"'{uri}' has characters not allowed in a List-Unsubscribe URL; percent-encode them.", parameter);
}
