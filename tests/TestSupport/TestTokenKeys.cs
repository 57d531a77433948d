using System.Security.Cryptography;
using Crm.BuildingBlocks.Tenancy;

namespace Crm.TestSupport;

/// <summary>An issuer's ECDSA P-256 key pair as the settings carry it: the private PEM for issuers, the public PEM for services.</summary>
public sealed record TestTokenKeys(string KeyId, string PrivatePem, string PublicPem)
{
    /// <summary>The test issuer's: every <see cref="ServiceHost"/> verifies with its public key, the gateway signs with its private one.</summary>
    public static readonly TestTokenKeys Default = Generate("test-key-1");

    public static TestTokenKeys Generate(string keyId)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        return new TestTokenKeys(keyId, key.ExportPkcs8PrivateKeyPem(), key.ExportSubjectPublicKeyInfoPem());
    }

    public IdentityTokenIssuer Issuer() => new(PrivatePem, KeyId);

    /// <summary>Settings of a service that verifies tokens of these keys (the first becomes Tenancy:PublicKeys:0, and so on).</summary>
    public static Dictionary<string, string?> PublicKeySettings(params TestTokenKeys[] keys)
    {
        var settings = new Dictionary<string, string?>();
        for (var i = 0; i < keys.Length; i++)
        {
            settings[$"Tenancy:PublicKeys:{i}:KeyId"] = keys[i].KeyId;
            settings[$"Tenancy:PublicKeys:{i}:Pem"] = keys[i].PublicPem;
        }
        return settings;
    }

    /// <summary>Settings of an issuer (the gateway) signing with this key.</summary>
    public Dictionary<string, string?> SigningSettings() => new()
    {
        ["Tenancy:SigningKey"] = PrivatePem,
        ["Tenancy:SigningKeyId"] = KeyId,
    };
}
