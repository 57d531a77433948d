// The loopback Twilio fake compiles this same file (with CRM_FAKES, as internal types) so that what
// the fake reports and what the service computes cannot drift apart.
using System.Security.Cryptography;
using System.Text;

namespace Crm.Delivery.Channels.Sms;

/// <summary>
/// The X-Twilio-Signature of a form-encoded webhook: base64(HMAC-SHA1(authToken, url + k1 + v1 + k2 + v2 ...))
/// with the POST parameters sorted by name (ordinal). Behaviour follows twilio-csharp's RequestValidator
/// where the official SDKs disagree:
/// <list type="bullet">
/// <item>The URL is signed exactly as given: host and scheme casing, userinfo and query escaping are kept
/// (twilio-node normalises through WHATWG URL, lowercasing the host and escaping ' as %27).</item>
/// <item>A repeated parameter name is signed once with its values joined by ',' in arrival order, as
/// twilio-csharp's NameValueCollection overload (and ASP.NET's StringValues.ToString()) does
/// (twilio-python and twilio-node append name+value once per distinct value, values sorted).
/// Twilio's Messages status callbacks never repeat a name, so this only matters for other webhooks.</item>
/// <item>Validation accepts the signature over the URL with the port removed or with the scheme's
/// default port inserted, because Twilio's back end is inconsistent about ports (all SDKs do this).</item>
/// </list>
/// </summary>
#if CRM_FAKES
internal static class TwilioSignature
#else
public static class TwilioSignature
#endif
{
    public const string HeaderName = "X-Twilio-Signature";

    /// <summary>Signature of <paramref name="url"/> (exactly as given) and the form parameters.</summary>
    public static string Compute(string url, IEnumerable<KeyValuePair<string, string>>? parameters, string authToken)
    {
        ArgumentNullException.ThrowIfNull(url);
        ArgumentNullException.ThrowIfNull(authToken);
        var data = new StringBuilder(url);
        foreach (var (name, value) in JoinRepeatedNames(parameters).OrderBy(p => p.Key, StringComparer.Ordinal))
        {
            data.Append(name).Append(value);
        }
        var mac = HMACSHA1.HashData(Encoding.UTF8.GetBytes(authToken), Encoding.UTF8.GetBytes(data.ToString()));
        return Convert.ToBase64String(mac);
    }

#if CRM_FAKES
    /// <summary>
    /// True when <paramref name="signature"/> matches the URL with its port removed or with the default port
    /// added. Constant-time comparison. <paramref name="url"/> must be the full URL Twilio requested, as it
    /// was configured (behind a proxy, rebuild it from the public scheme/host, not the internal one).
    /// </summary>
    public static bool Validate(
        string url, IEnumerable<KeyValuePair<string, string>>? parameters, string authToken, string? signature)
    {
        ArgumentNullException.ThrowIfNull(url);
        if (string.IsNullOrEmpty(signature))
        {
            return false;
        }
        var pairs = parameters?.ToList();
        var expected = Encoding.UTF8.GetBytes(signature);
        var withoutPort = Encoding.UTF8.GetBytes(Compute(WithoutPort(url), pairs, authToken));
        var withPort = Encoding.UTF8.GetBytes(Compute(WithDefaultPort(url), pairs, authToken));
        // Evaluate both so timing does not reveal which variant matched.
        var a = CryptographicOperations.FixedTimeEquals(withoutPort, expected);
        var b = CryptographicOperations.FixedTimeEquals(withPort, expected);
        return a | b;
    }

#else
    /// <summary>
    /// True when <paramref name="signature"/> is Twilio's signature of the request, checked by Twilio's own
    /// <see cref="Twilio.Security.RequestValidator"/> (URL with and without the port, constant-time). A repeated
    /// parameter name reaches it as one value joined by ',' (NameValueCollection), as ASP.NET hands Twilio's form over.
    /// <paramref name="url"/> must be the full URL Twilio requested, as it was configured (behind a proxy,
    /// rebuild it from the public scheme/host, not the internal one).
    /// </summary>
    public static bool Validate(
        string url, IEnumerable<KeyValuePair<string, string>>? parameters, string authToken, string? signature)
    {
        ArgumentNullException.ThrowIfNull(url);
        ArgumentNullException.ThrowIfNull(authToken);
        if (string.IsNullOrEmpty(signature))
        {
            return false;
        }
        var form = new System.Collections.Specialized.NameValueCollection();
        foreach (var (name, value) in parameters ?? [])
        {
            form.Add(name, value);
        }
        var validator = new Twilio.Security.RequestValidator(authToken);
        // RequestValidator 8.2.0 refuses a signature made over the URL without its port when the request URL
        // names the scheme's default port (":443"), which Twilio's back end produces (twilio-node's vectors):
        // the URL without the port is offered as well. Both are evaluated, so timing tells nothing.
        return validator.Validate(url, form, signature) | validator.Validate(WithoutPort(url), form, signature);
    }
#endif

    /// <summary>The URL with any explicit port removed; everything else untouched.</summary>
    public static string WithoutPort(string url)
    {
        var parts = UrlAuthority.Parse(url);
        return parts is null || parts.Value.Port is null ? url : parts.Value.Rebuild(url, port: null);
    }

    /// <summary>The URL with the scheme's default port (http 80, https 443) inserted when it has no port.</summary>
    public static string WithDefaultPort(string url)
    {
        var parts = UrlAuthority.Parse(url);
        if (parts is null || parts.Value.Port is not null)
        {
            return url;
        }
        var scheme = url[..parts.Value.SchemeLength];
        var port = scheme.ToUpperInvariant() switch
        {
            "HTTPS" => "443",
            "HTTP" => "80",
            _ => null,
        };
        return port is null ? url : parts.Value.Rebuild(url, port);
    }

    private static IEnumerable<KeyValuePair<string, string>> JoinRepeatedNames(
        IEnumerable<KeyValuePair<string, string>>? parameters)
    {
        if (parameters is null)
        {
            return [];
        }
        return parameters
            .GroupBy(p => p.Key, StringComparer.Ordinal)
            .Select(g => KeyValuePair.Create(g.Key, string.Join(",", g.Select(p => p.Value ?? ""))));
    }

    /// <summary>
    /// Locates host and port inside "scheme://[userinfo@]host[:port][/path][?query]" by string
    /// positions, so rebuilding keeps every other character as it was (System.Uri would lowercase
    /// the host and scheme).
    /// </summary>
    private readonly record struct UrlAuthority(int SchemeLength, int HostStart, int HostEnd, int AuthorityEnd, string? Port)
    {
        public static UrlAuthority? Parse(string url)
        {
            var schemeEnd = url.IndexOf("://", StringComparison.Ordinal);
            if (schemeEnd <= 0)
            {
                return null;
            }
            var authorityStart = schemeEnd + 3;
            var authorityEnd = url.IndexOfAny(['/', '?', '#'], authorityStart);
            if (authorityEnd < 0)
            {
                authorityEnd = url.Length;
            }
            var hostStart = url.LastIndexOf('@', authorityEnd - 1, authorityEnd - authorityStart) + 1;
            if (hostStart <= 0)
            {
                hostStart = authorityStart;
            }
            if (hostStart >= authorityEnd)
            {
                return null;
            }
            // The port is what follows the last ':' after the host (and after ']' for an IPv6 literal).
            var searchFrom = url[hostStart] == '[' ? url.IndexOf(']', hostStart, authorityEnd - hostStart) : hostStart;
            var colon = searchFrom < 0 ? -1 : url.IndexOf(':', searchFrom, authorityEnd - searchFrom);
            if (colon < 0)
            {
                return new UrlAuthority(schemeEnd, hostStart, authorityEnd, authorityEnd, null);
            }
            return new UrlAuthority(schemeEnd, hostStart, colon, authorityEnd, url[(colon + 1)..authorityEnd]);
        }

        public string Rebuild(string url, string? port) =>
            port is null
                ? string.Concat(url.AsSpan(0, HostEnd), url.AsSpan(AuthorityEnd))
                : string.Concat(url.AsSpan(0, HostEnd), ":" + port, url.AsSpan(AuthorityEnd));
    }
}
