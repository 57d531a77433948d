using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Options;

namespace Crm.BuildingBlocks.Tenancy;

/// <summary>
/// The "Tenancy" section. Identity tokens are ES256 (ECDSA P-256): issuers (the gateway, the CLI) hold a
/// private key, services hold only public keys, so no service can mint an identity. Verifiers read
/// <see cref="PublicKeys"/>; issuers read <see cref="SigningKey"/> and <see cref="SigningKeyId"/>.
/// </summary>
public sealed class TenancyOptions
{
    public const string Section = "Tenancy";

    /// <summary>
    /// Verifiers: the keys whose tokens are accepted, picked by the token's <c>kid</c> header. Two
    /// during a rotation. Env: <c>Tenancy__PublicKeys__0__KeyId</c>, <c>Tenancy__PublicKeys__0__Pem</c>.
    /// </summary>
    public List<TokenPublicKey> PublicKeys { get; set; } = [];

    /// <summary>The public keys, leaving out empty slots (both fields empty), e.g. a rotation's next key not yet set in Helm or compose.</summary>
    public IEnumerable<(int Index, TokenPublicKey Key)> ConfiguredPublicKeys() =>
        PublicKeys.Select((k, i) => (i, k)).Where(e => !(string.IsNullOrWhiteSpace(e.k.KeyId) && string.IsNullOrWhiteSpace(e.k.Pem)));

    /// <summary>Issuers only: the private key (PEM, "EC PRIVATE KEY" or PKCS#8 "PRIVATE KEY", P-256).</summary>
    public string SigningKey { get; set; } = "";

    /// <summary>Issuers only: the <c>kid</c> put on every token, naming the public key that verifies it.</summary>
    public string SigningKeyId { get; set; } = "";

    /// <summary>
    /// A service that calls others as itself (Campaigns reading segment members for a scheduled run, with no
    /// user present): its own private key (PEM, P-256), never the issuers' <see cref="SigningKey"/>. The
    /// receiving services list its public key with <see cref="TokenPublicKey.Scopes"/>, so a token it signs
    /// can claim only what they allow it.
    /// </summary>
    public string WorkloadKey { get; set; } = "";

    /// <summary>The <c>kid</c> of <see cref="WorkloadKey"/>.</summary>
    public string WorkloadKeyId { get; set; } = "";

    public string Issuer { get; set; } = "crm-platform";
    public string Audience { get; set; } = "crm-services";
}

/// <summary>A verification key: its id and a PEM "PUBLIC KEY" (SubjectPublicKeyInfo) or "CERTIFICATE" holding one.</summary>
public sealed class TokenPublicKey
{
    public string KeyId { get; set; } = "";
    public string Pem { get; set; } = "";

    /// <summary>
    /// An allow-list: a token signed by this key is refused if it claims any scope not listed (so "*" too,
    /// unless listed). Empty: any scope (the issuers' keys). Env <c>Tenancy__PublicKeys__1__Scopes__0</c>.
    /// </summary>
    public List<string> Scopes { get; set; } = [];
}

/// <summary>Reads the PEM keys of identity tokens, refusing anything but ECDSA P-256 in the expected role.</summary>
public static class TokenKeys
{
    /// <summary>A public key; a private key is refused, since a service holding one could mint identities.</summary>
    public static ECDsa ReadPublicKey(string pem)
    {
        var label = Label(pem);
        ECDsa key;
        switch (label)
        {
            case "PUBLIC KEY":
                key = ECDsa.Create();
                key.ImportFromPem(pem);
                break;
            case "CERTIFICATE":
                using (var certificate = X509Certificate2.CreateFromPem(pem))
                    key = certificate.GetECDsaPublicKey() ?? throw new FormatException("the certificate's key is not an ECDSA key");
                break;
            case "PRIVATE KEY" or "EC PRIVATE KEY" or "ENCRYPTED PRIVATE KEY":
                throw new FormatException("is a private key; services take public keys only (PEM \"PUBLIC KEY\")");
            default:
                throw new FormatException($"is a PEM \"{label}\"; expected \"PUBLIC KEY\" or \"CERTIFICATE\"");
        }
        return RequireP256(key);
    }

    public static ECDsa ReadPrivateKey(string pem)
    {
        var label = Label(pem);
        if (label is not ("PRIVATE KEY" or "EC PRIVATE KEY"))
            throw new FormatException($"is a PEM \"{label}\"; expected an unencrypted \"EC PRIVATE KEY\" or \"PRIVATE KEY\"");
        var key = ECDsa.Create();
        key.ImportFromPem(pem);
        return RequireP256(key);
    }

    private static string Label(string pem)
    {
        if (string.IsNullOrWhiteSpace(pem)) throw new FormatException("is empty");
        if (!PemEncoding.TryFind(pem, out var fields)) throw new FormatException("is not PEM (-----BEGIN ...----- base64 -----END ...-----)");
        return pem[fields.Label].ToString();
    }

    private static ECDsa RequireP256(ECDsa key)
    {
        // Only named curves export without the private part; P-256 is the one ES256 is defined on.
        if (key.ExportParameters(false).Curve.Oid.Value != ECCurve.NamedCurves.nistP256.Oid.Value)
        {
            key.Dispose();
            throw new FormatException("is not a P-256 (prime256v1) key, which ES256 needs");
        }
        return key;
    }
}

/// <summary>A service (verifier): at least one public key, each readable, ids unique; and no private key.</summary>
public sealed class TokenVerifierOptionsValidation : IValidateOptions<TenancyOptions>
{
    public ValidateOptionsResult Validate(string? name, TenancyOptions options)
    {
        var errors = new List<string>();
        if (!string.IsNullOrEmpty(options.SigningKey))
            errors.Add("Tenancy:SigningKey is set, but a service only verifies identity tokens (Tenancy:PublicKeys); the private key belongs to the issuers (the gateway, the CLI).");
        var keys = options.ConfiguredPublicKeys().ToList();
        if (keys.Count == 0)
            errors.Add("Tenancy:PublicKeys is required: at least one { KeyId, Pem } (env Tenancy__PublicKeys__0__KeyId and Tenancy__PublicKeys__0__Pem).");
        foreach (var (i, key) in keys)
        {
            if (string.IsNullOrWhiteSpace(key.KeyId)) errors.Add($"Tenancy:PublicKeys:{i}:KeyId is required.");
            else if (keys.First(k => k.Key.KeyId == key.KeyId).Index < i) errors.Add($"Tenancy:PublicKeys:{i}:KeyId '{key.KeyId}' is listed twice.");
            try
            {
                TokenKeys.ReadPublicKey(key.Pem).Dispose();
            }
            catch (Exception e) when (e is FormatException or CryptographicException or ArgumentException)
            {
                errors.Add($"Tenancy:PublicKeys:{i}:Pem {e.Message}.");
            }
        }
        if (!string.IsNullOrEmpty(options.WorkloadKey) || !string.IsNullOrEmpty(options.WorkloadKeyId))
        {
            if (string.IsNullOrWhiteSpace(options.WorkloadKeyId)) errors.Add("Tenancy:WorkloadKeyId is required with Tenancy:WorkloadKey.");
            try
            {
                TokenKeys.ReadPrivateKey(options.WorkloadKey).Dispose();
            }
            catch (Exception e) when (e is FormatException or CryptographicException or ArgumentException)
            {
                errors.Add($"Tenancy:WorkloadKey {e.Message} (this service's own ECDSA P-256 private key, PEM).");
            }
        }
        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }
}

/// <summary>An issuer (the gateway): a readable P-256 private key and its key id.</summary>
public sealed class TokenIssuerOptionsValidation : IValidateOptions<TenancyOptions>
{
    public ValidateOptionsResult Validate(string? name, TenancyOptions options)
    {
        var errors = new List<string>();
        if (string.IsNullOrWhiteSpace(options.SigningKeyId)) errors.Add("Tenancy:SigningKeyId is required: the key id (kid) services know the matching public key by.");
        try
        {
            TokenKeys.ReadPrivateKey(options.SigningKey).Dispose();
        }
        catch (Exception e) when (e is FormatException or CryptographicException or ArgumentException)
        {
            errors.Add($"Tenancy:SigningKey {e.Message} (the issuer's ECDSA P-256 private key, PEM).");
        }
        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }
}
