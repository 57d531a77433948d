using System.Collections.Concurrent;
using System.Globalization;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace Crm.Delivery.Channels.Email;

/// <summary>Amazon SNS notifications (Delivery:Sns).</summary>
public sealed class SnsOptions
{
    /// <summary>
    /// Hosts (host or host:port) trusted to serve SNS signing certificates besides Amazon's own
    /// (sns.&lt;region&gt;.amazonaws.com). Empty in production; tests name their loopback fake.
    /// </summary>
    public List<string> CertificateHosts { get; set; } = [];

    /// <summary>A notification signed longer ago than this is refused (a replay); SNS retries for at most an hour.</summary>
    public TimeSpan MaxAge { get; set; } = TimeSpan.FromHours(1);
}

/// <summary>An SNS message (Notification, SubscriptionConfirmation, UnsubscribeConfirmation) as posted.</summary>
public sealed record SnsMessage(string Type, string MessageId, string TopicArn, string? Subject, string Message, string Timestamp,
    string SignatureVersion, string Signature, string SigningCertUrl, string? SubscribeUrl, string? Token)
{
    public static SnsMessage? Parse(string json)
    {
        try
        {
            using var doc = JsonDocument.Parse(json);
            var r = doc.RootElement;
            string? S(string name) => r.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;
            return S("Type") is { } type && S("MessageId") is { } id && S("TopicArn") is { } topic && S("Message") is { } message
                   && S("Timestamp") is { } ts && S("SignatureVersion") is { } version && S("Signature") is { } signature && S("SigningCertURL") is { } cert
                ? new SnsMessage(type, id, topic, S("Subject"), message, ts, version, signature, cert, S("SubscribeURL"), S("Token"))
                : null;
        }
        catch (JsonException)
        {
            return null;
        }
    }
}

/// <summary>
/// Verifies an SNS message's signature as AWS documents it: the canonical string of the message's fields
/// (name, newline, value, newline, in the documented order; Subject only when present), RSA PKCS#1 with SHA-1
/// (SignatureVersion 1) or SHA-256 (2), under the public key of the certificate at SigningCertURL — which must be
/// https and on sns.&lt;region&gt;.amazonaws.com (or an operator-trusted host). Certificates are fetched once and
/// cached. A message signed longer ago than Delivery:Sns:MaxAge is refused too.
/// </summary>
public sealed partial class SnsMessageVerifier(IHttpClientFactory http, DeliveryOptions options, TimeProvider clock, ILogger<SnsMessageVerifier> logger)
{
    private const int MaxCachedCertificates = 64;
    private readonly ConcurrentDictionary<string, RSA> _keys = new(StringComparer.Ordinal);

    [GeneratedRegex(@"^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$", RegexOptions.CultureInvariant)]
    private static partial Regex AmazonHost();

    /// <summary>An https URL on an SNS host: the signing certificate's, and a subscription's SubscribeURL.</summary>
    public bool IsTrustedUrl(string url) =>
        Uri.TryCreate(url, UriKind.Absolute, out var uri) && uri.Scheme == Uri.UriSchemeHttps && string.IsNullOrEmpty(uri.UserInfo)
        && (AmazonHost().IsMatch(uri.Host) && uri.IsDefaultPort
            || options.Sns.CertificateHosts.Any(h => string.Equals(h, uri.Authority, StringComparison.OrdinalIgnoreCase)
                                                      || (string.Equals(h, uri.Host, StringComparison.OrdinalIgnoreCase) && uri.IsDefaultPort)));

    /// <returns>Null when the message verifies; otherwise why not.</returns>
    public async Task<string?> VerifyAsync(SnsMessage m, CancellationToken ct)
    {
        var hash = m.SignatureVersion switch { "1" => HashAlgorithmName.SHA1, "2" => HashAlgorithmName.SHA256, _ => default };
        if (hash == default) return $"unknown SignatureVersion '{m.SignatureVersion}'";
        if (!IsTrustedUrl(m.SigningCertUrl)) return "SigningCertURL is not an https URL on an SNS host";
        if (!DateTimeOffset.TryParse(m.Timestamp, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var signedAt))
            return "Timestamp is not a time";
        if (clock.GetUtcNow() - signedAt > options.Sns.MaxAge) return "signed too long ago (a replay)";
        byte[] signature;
        try
        {
            signature = Convert.FromBase64String(m.Signature);
        }
        catch (FormatException)
        {
            return "Signature is not base64";
        }
        if (CanonicalString(m) is not { } canonical) return $"unknown Type '{m.Type}'";
        RSA key;
        try
        {
            key = await KeyAsync(m.SigningCertUrl, ct);
        }
        catch (Exception ex) when (ex is HttpRequestException or CryptographicException or TaskCanceledException)
        {
            logger.LogWarning(ex, "SNS signing certificate {Url} could not be read", m.SigningCertUrl);
            return "the signing certificate could not be read";
        }
        return key.VerifyData(Encoding.UTF8.GetBytes(canonical), signature, hash, RSASignaturePadding.Pkcs1) ? null : "the signature does not verify";
    }

    /// <summary>The string SNS signs: for a Notification Message, MessageId, Subject (if any), Timestamp, TopicArn, Type;
    /// for a (Un)SubscriptionConfirmation Message, MessageId, SubscribeURL, Timestamp, Token, TopicArn, Type.</summary>
    public static string? CanonicalString(SnsMessage m)
    {
        var fields = m.Type switch
        {
            "Notification" => new List<(string, string?)> { ("Message", m.Message), ("MessageId", m.MessageId), ("Subject", m.Subject),
                ("Timestamp", m.Timestamp), ("TopicArn", m.TopicArn), ("Type", m.Type) },
            "SubscriptionConfirmation" or "UnsubscribeConfirmation" => [("Message", m.Message), ("MessageId", m.MessageId),
                ("SubscribeURL", m.SubscribeUrl), ("Timestamp", m.Timestamp), ("Token", m.Token), ("TopicArn", m.TopicArn), ("Type", m.Type)],
            _ => null,
        };
        if (fields is null) return null;
        var sb = new StringBuilder();
        foreach (var (name, value) in fields.Where(f => f.Item2 is not null)) sb.Append(name).Append('\n').Append(value).Append('\n');
        return sb.ToString();
    }

    private async Task<RSA> KeyAsync(string url, CancellationToken ct)
    {
        if (_keys.TryGetValue(url, out var cached)) return cached;
        using var client = http.CreateClient(SnsNotifications.HttpClientName);
        var pem = await client.GetStringAsync(new Uri(url), ct);
        using var certificate = X509Certificate2.CreateFromPem(pem);
        var key = certificate.GetRSAPublicKey() ?? throw new CryptographicException("the certificate has no RSA key");
        if (_keys.Count >= MaxCachedCertificates) _keys.Clear();
        return _keys.GetOrAdd(url, key);
    }
}
