using System.Net;
using System.Text.RegularExpressions;

namespace Crm.Delivery.Features.Tracking;

/// <summary>
/// Rewrites an email's links to tracked ones: every http(s) href of the HTML part and every http(s) URL of the
/// text part. mailto:, tel:, anchors and the unsubscribe link are left alone (a tracked unsubscribe link would
/// count every unsubscribe as a click, and mailbox providers distrust redirected ones). One URL has one index,
/// whichever part it is in, so a click is counted once per message and link.
/// </summary>
public static partial class LinkRewriter
{
    [GeneratedRegex("""(?<pre>\bhref\s*=\s*)(?<q>["'])(?<url>[^"']*)\k<q>""", RegexOptions.IgnoreCase | RegexOptions.CultureInvariant)]
    private static partial Regex Href();

    [GeneratedRegex("""https?://[^\s<>"']+""", RegexOptions.IgnoreCase | RegexOptions.CultureInvariant)]
    private static partial Regex TextUrl();

    /// <param name="tracked">The tracked URL standing for a link: its index and its URL.</param>
    /// <param name="skip">URLs left as they are (the unsubscribe link).</param>
    public static (string? Text, string? Html) Rewrite(string? text, string? html, Func<int, string, string> tracked, IReadOnlyCollection<string> skip)
    {
        var indexes = new Dictionary<string, int>(StringComparer.Ordinal);
        string? Track(string url)
        {
            if (!IsTrackable(url) || skip.Contains(url)) return null;
            if (!indexes.TryGetValue(url, out var index)) indexes[url] = index = indexes.Count;
            return tracked(index, url);
        }

        var newHtml = html is null ? null : Href().Replace(html, m =>
        {
            var url = WebUtility.HtmlDecode(m.Groups["url"].Value).Trim();
            return Track(url) is { } t ? $"{m.Groups["pre"].Value}{m.Groups["q"].Value}{WebUtility.HtmlEncode(t)}{m.Groups["q"].Value}" : m.Value;
        });
        var newText = text is null ? null : TextUrl().Replace(text, m =>
        {
            // Sentence punctuation after a URL is not part of it.
            var url = m.Value.TrimEnd('.', ',', ';', ':', '!', '?', ')');
            return Track(url) is { } t ? t + m.Value[url.Length..] : m.Value;
        });
        return (newText, newHtml);
    }

    private static bool IsTrackable(string url) =>
        Uri.TryCreate(url, UriKind.Absolute, out var uri) && (uri.Scheme == Uri.UriSchemeHttps || uri.Scheme == Uri.UriSchemeHttp);

    /// <summary>The open pixel, placed before &lt;/body&gt; when there is one, else at the end.</summary>
    public static string AddPixel(string html, string pixelUrl) =>
        InsertBeforeBodyEnd(html, $"""<img src="{WebUtility.HtmlEncode(pixelUrl)}" width="1" height="1" alt="" style="display:block;border:0;width:1px;height:1px">""");

    public static string InsertBeforeBodyEnd(string html, string fragment)
    {
        var end = html.LastIndexOf("</body>", StringComparison.OrdinalIgnoreCase);
        return end < 0 ? html + fragment : html.Insert(end, fragment);
    }
}
