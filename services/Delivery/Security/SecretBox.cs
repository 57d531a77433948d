using System.Security.Cryptography;

namespace Crm.Delivery.Security;

/// <summary>
/// Encrypts provider secrets at rest with AES-256-GCM under a key from configuration
/// (Delivery:SecretKey, base64 of 32 bytes). Stored as nonce | tag | ciphertext.
/// </summary>
public sealed class SecretBox
{
    private readonly byte[] _key;

    public SecretBox(string base64Key)
    {
        _key = string.IsNullOrWhiteSpace(base64Key) ? [] : Convert.FromBase64String(base64Key);
        if (_key.Length != 32) throw new InvalidOperationException("Delivery:SecretKey must be the base64 of 32 random bytes.");
    }

    public byte[] Seal(string secret, string associatedData)
    {
        var plain = System.Text.Encoding.UTF8.GetBytes(secret);
        var sealedBytes = new byte[12 + 16 + plain.Length];
        var nonce = sealedBytes.AsSpan(0, 12);
        RandomNumberGenerator.Fill(nonce);
        using var aes = new AesGcm(_key, 16);
        aes.Encrypt(nonce, plain, sealedBytes.AsSpan(28), sealedBytes.AsSpan(12, 16), System.Text.Encoding.UTF8.GetBytes(associatedData));
        return sealedBytes;
    }

    public string Open(byte[] sealedBytes, string associatedData)
    {
        var plain = new byte[sealedBytes.Length - 28];
        using var aes = new AesGcm(_key, 16);
        aes.Decrypt(sealedBytes.AsSpan(0, 12), sealedBytes.AsSpan(28), sealedBytes.AsSpan(12, 16), plain, System.Text.Encoding.UTF8.GetBytes(associatedData));
        return System.Text.Encoding.UTF8.GetString(plain);
    }
}
