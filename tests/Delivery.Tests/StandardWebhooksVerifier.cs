using System.Security.Cryptography;
using System.Text;

namespace Crm.Delivery.Tests;

/// <summary>
/// A receiver's verifier written from the Standard Webhooks specification (symmetric v1), independent of the
/// service's signer: the key is the base64 after "whsec_" (padding restored), the signed content is
/// "{webhook-id}.{webhook-timestamp}.{raw body}", any one of the space-separated "v1,&lt;base64&gt;" entries
/// must equal HMAC-SHA256 (compared in constant time), and the timestamp must lie within five minutes of now.
/// </summary>
public static class StandardWebhooksVerifier
{
    public static readonly TimeSpan Tolerance = TimeSpan.FromMinutes(5);

    /// <returns>null when the request verifies, otherwise why not.</returns>
    public static string? Verify(string secret, string? id, string? timestamp, string? signature, string body, long nowUnixSeconds)
    {
        if (id is null || timestamp is null || signature is null) return "Missing required headers";
        var key = KeyOf(secret);
        if (!long.TryParse(timestamp, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var ts)) return "Invalid Signature Headers";
        if (nowUnixSeconds - ts > Tolerance.TotalSeconds) return "Message timestamp too old";
        if (ts - nowUnixSeconds > Tolerance.TotalSeconds) return "Message timestamp too new";
        using var hmac = new HMACSHA256(key);
        var expected = hmac.ComputeHash(Encoding.UTF8.GetBytes(id + "." + timestamp + "." + body));
        foreach (var entry in signature.Split(' ', StringSplitOptions.RemoveEmptyEntries))
        {
            var comma = entry.IndexOf(',');
            if (comma < 0 || entry[..comma] != "v1") continue;
            var given = new byte[64];
            if (!Convert.TryFromBase64String(entry[(comma + 1)..], given, out var length)) continue;
            if (length == expected.Length && CryptographicOperations.FixedTimeEquals(given.AsSpan(0, length), expected)) return null;
        }
        return "No matching signature found";
    }

    public static byte[] KeyOf(string secret)
    {
        var b64 = secret.StartsWith("whsec_", StringComparison.Ordinal) ? secret[6..] : secret;
        if (b64.Length == 0) throw new ArgumentException("EmptyWebhookSecret", nameof(secret));
        return Convert.FromBase64String(b64.PadRight(b64.Length + ((4 - (b64.Length % 4)) % 4), '='));
    }
}
