using System.Security.Cryptography;
using System.Text;

namespace Crm.Contacts.Features.Suppressions;

public sealed class SuppressionOptions
{
    public const string Section = "Contacts";

    /// <summary>
    /// Contacts:SuppressionKey, the base64 of 32 to 64 random bytes: the deployment's secret for the
    /// erased-identity hashes. Losing it only makes erased people unrecognisable to later imports.
    /// </summary>
    public string SuppressionKey { get; set; } = "";

    public static string? Problem(SuppressionOptions o)
    {
        if (string.IsNullOrWhiteSpace(o.SuppressionKey)) return "Contacts:SuppressionKey is required (the base64 of 32 to 64 random bytes)";
        try
        {
            var length = Convert.FromBase64String(o.SuppressionKey).Length;
            return length is >= 32 and <= 64 ? null : $"Contacts:SuppressionKey must be 32 to 64 bytes, not {length}";
        }
        catch (FormatException)
        {
            return "Contacts:SuppressionKey is not base64";
        }
    }
}

/// <summary>
/// The keyed hash of an erased identity (external id, email, phone) kept in `suppressions`:
/// HMAC-SHA256(key, SHA-256(tenant \n kind \n value)). A plain SHA-256 of a Korean mobile number is
/// reversed in seconds by trying every number; without the deployment's key it is not.
///
/// The imports compute the same hash in SQL (suppression_hmac), from the key's inner and outer pads,
/// so the key itself never travels to the database. Hashing the old unkeyed digest (not the value)
/// is what let the hashes written before the key existed be converted in place.
/// </summary>
public sealed class SuppressionKey
{
    private readonly byte[] _key;

    public SuppressionKey(SuppressionOptions options)
    {
        if (SuppressionOptions.Problem(options) is { } problem) throw new InvalidOperationException(problem);
        _key = Convert.FromBase64String(options.SuppressionKey);
        // RFC 2104: the key padded to the block (64 bytes), XORed with 0x36 and 0x5c.
        InnerPad = new byte[64];
        OuterPad = new byte[64];
        for (var i = 0; i < 64; i++)
        {
            var k = i < _key.Length ? _key[i] : (byte)0;
            InnerPad[i] = (byte)(k ^ 0x36);
            OuterPad[i] = (byte)(k ^ 0x5c);
        }
    }

    public byte[] InnerPad { get; }
    public byte[] OuterPad { get; }

    public byte[] Hash(string tenantId, string kind, string value) =>
        HMACSHA256.HashData(_key, SHA256.HashData(Encoding.UTF8.GetBytes($"{tenantId}\n{kind}\n{value}")));
}
