using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using Microsoft.AspNetCore.WebUtilities;

namespace Crm.Delivery.Features.Tracking;

/// <summary>What a tracking or unsubscribe link stands for: its kind, the message, and for a click the link's index and URL.</summary>
public sealed record TrackingToken(TrackingTokenKind Kind, string Tenant, Guid MessageId, int LinkIndex = 0, string Url = "");

public enum TrackingTokenKind : byte
{
    Open = (byte)'o',
    Click = (byte)'c',
    Unsubscribe = (byte)'u',
}

/// <summary>
/// Signed, stateless link tokens: base64url of <c>version, kind, message id (16 bytes), tenant (length + UTF-8),
/// link index (2 bytes), URL (UTF-8)</c> followed by the first 16 bytes of its HMAC-SHA256 under the deployment's
/// Delivery:Tracking:SigningKey. A click redirects only to the URL inside a token that verifies, so a link cannot
/// be turned into an open redirect, and a changed byte anywhere (message, link, URL) is refused.
/// </summary>
public sealed class TrackingTokens(byte[] key)
{
    private const byte Version = 1;
    private const int MacLength = 16;
    private static readonly byte[] Domain = "crm-tracking-v1\0"u8.ToArray();

    public string Create(TrackingToken token)
    {
        var tenant = Encoding.UTF8.GetBytes(token.Tenant);
        var url = Encoding.UTF8.GetBytes(token.Url);
        if (tenant.Length > byte.MaxValue) throw new ArgumentException("tenant id too long", nameof(token));
        var payload = new byte[2 + 16 + 1 + tenant.Length + 2 + url.Length];
        payload[0] = Version;
        payload[1] = (byte)token.Kind;
        token.MessageId.TryWriteBytes(payload.AsSpan(2, 16), bigEndian: true, out _);
        payload[18] = (byte)tenant.Length;
        tenant.CopyTo(payload, 19);
        BinaryPrimitives.WriteUInt16BigEndian(payload.AsSpan(19 + tenant.Length), checked((ushort)token.LinkIndex));
        url.CopyTo(payload, 21 + tenant.Length);
        return WebEncoders.Base64UrlEncode([.. payload, .. Mac(payload)]);
    }

    /// <returns>The token, when it is well-formed, of the expected kind and signed with this deployment's key; otherwise null.</returns>
    public TrackingToken? Read(string text, TrackingTokenKind kind)
    {
        byte[] bytes;
        try
        {
            bytes = WebEncoders.Base64UrlDecode(text);
        }
        catch (FormatException)
        {
            return null;
        }
        if (bytes.Length < 21 + MacLength) return null;
        var payload = bytes.AsSpan(0, bytes.Length - MacLength);
        if (!CryptographicOperations.FixedTimeEquals(Mac(payload), bytes.AsSpan(payload.Length))) return null;
        if (payload[0] != Version || payload[1] != (byte)kind) return null;
        var tenantLength = payload[18];
        if (payload.Length < 21 + tenantLength) return null;
        try
        {
            return new TrackingToken(kind, Encoding.UTF8.GetString(payload.Slice(19, tenantLength)), new Guid(payload.Slice(2, 16), bigEndian: true),
                BinaryPrimitives.ReadUInt16BigEndian(payload[(19 + tenantLength)..]), new UTF8Encoding(false, true).GetString(payload[(21 + tenantLength)..]));
        }
        catch (ArgumentException)
        {
            return null; // not UTF-8: signed by us, so never; but a decoder never trusts
        }
    }

    private byte[] Mac(ReadOnlySpan<byte> payload)
    {
        var mac = new byte[32];
        using var hmac = IncrementalHash.CreateHMAC(HashAlgorithmName.SHA256, key);
        hmac.AppendData(Domain);
        hmac.AppendData(payload);
        hmac.GetHashAndReset(mac);
        return mac[..MacLength];
    }
}
