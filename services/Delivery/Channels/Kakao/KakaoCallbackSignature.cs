// The loopback Kakao fake compiles this same file (with CRM_FAKES, as an internal type), so what the fake
// signs and what the service checks cannot drift apart.
using System.Security.Cryptography;
using System.Text;

namespace Crm.Delivery.Channels.Kakao;

/// <summary>
/// The signature of a KakaoTalk result webhook: <c>X-Kakao-Timestamp</c> (Unix seconds) and
/// <c>X-Kakao-Signature</c> = base64(HMAC-SHA256(secret key, timestamp + "." + raw body)), keyed with the
/// account's NHN Cloud secret key, the secret both sides already share. A timestamp further than
/// <see cref="Tolerance"/> from now is refused, so a captured callback cannot be replayed later.
/// </summary>
#if CRM_FAKES
internal static class KakaoCallbackSignature
#else
public static class KakaoCallbackSignature
#endif
{
    public const string TimestampHeader = "X-Kakao-Timestamp";
    public const string SignatureHeader = "X-Kakao-Signature";
    public static readonly TimeSpan Tolerance = TimeSpan.FromMinutes(5);

    public static string Compute(string secretKey, long timestamp, string body) =>
        Convert.ToBase64String(HMACSHA256.HashData(Encoding.UTF8.GetBytes(secretKey), Encoding.UTF8.GetBytes($"{timestamp}.{body}")));

    /// <summary>True when the signature matches (constant time) and the timestamp is within the tolerance of <paramref name="now"/>.</summary>
    public static bool Validate(string secretKey, string? timestamp, string body, string? signature, DateTimeOffset now)
    {
        if (!long.TryParse(timestamp, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var seconds)
            || string.IsNullOrEmpty(signature))
            return false;
        if (Math.Abs(now.ToUnixTimeSeconds() - seconds) > Tolerance.TotalSeconds) return false;
        return CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(Compute(secretKey, seconds, body)), Encoding.UTF8.GetBytes(signature));
    }
}
