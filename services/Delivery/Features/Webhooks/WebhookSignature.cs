using System.Security.Cryptography;
using System.Text;

namespace Crm.Delivery.Features.Webhooks;

/// <summary>
/// Standard Webhooks, symmetric v1: <c>webhook-signature: v1,&lt;base64 HMAC-SHA256 of "{id}.{timestamp}.{body}"&gt;</c>,
/// keyed with the base64-decoded part of a <c>whsec_</c> secret. Several signatures (a secret being rotated
/// out and its successor) are space-separated; a receiver accepts the delivery when any one verifies.
/// </summary>
public static class WebhookSignature
{
    public const string SecretPrefix = "whsec_";

    /// <summary>A new secret: "whsec_" and the base64 of 32 random bytes (the scheme allows 24 to 64).</summary>
    public static string NewSecret() => SecretPrefix + Convert.ToBase64String(RandomNumberGenerator.GetBytes(32));

    /// <summary>The HMAC key of a secret, with or without its prefix.</summary>
    public static byte[] Key(string secret) =>
        Convert.FromBase64String(secret.StartsWith(SecretPrefix, StringComparison.Ordinal) ? secret[SecretPrefix.Length..] : secret);

    /// <summary>One signature, "v1,&lt;base64&gt;".</summary>
    public static string Sign(byte[] key, string id, long timestamp, string body)
    {
        var content = Encoding.UTF8.GetBytes($"{id}.{timestamp}.{body}");
        return "v1," + Convert.ToBase64String(HMACSHA256.HashData(key, content));
    }

    /// <summary>The webhook-signature header: one signature per key, space-separated.</summary>
    public static string Header(IReadOnlyList<byte[]> keys, string id, long timestamp, string body) =>
        keys.Count == 1 ? Sign(keys[0], id, timestamp, body) : string.Join(' ', keys.Select(k => Sign(k, id, timestamp, body)));
}
