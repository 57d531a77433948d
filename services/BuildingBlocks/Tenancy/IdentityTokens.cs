using System.Collections.Concurrent;
using System.Security.Claims;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace Crm.BuildingBlocks.Tenancy;

/// <summary>What an identity token says beyond the registered claims.</summary>
internal static class IdentityClaims
{
    public const string Tenant = "tenant";
    public const string Scope = "scope";
    public const string Subject = "sub";

    /// <summary>
    /// No token lives longer: the issuer refuses to sign one, services refuse to accept one. It is also
    /// how long a removed public key's tokens could still be in use (see the README's key rotation).
    /// </summary>
    public static readonly TimeSpan MaxLifetime = TimeSpan.FromHours(12);
}

/// <summary>
/// Signs identity tokens (JWT, ES256, with the key's <c>kid</c>). Only issuers hold one: the gateway's
/// API-key exchange, the local CLI, and tests.
/// </summary>
public sealed class IdentityTokenIssuer
{
    public static readonly TimeSpan DefaultLifetime = TimeSpan.FromMinutes(15);
    public static TimeSpan MaxLifetime => IdentityClaims.MaxLifetime;

    private readonly SigningCredentials _credentials;
    private readonly string _issuer;
    private readonly string _audience;
    private readonly JsonWebTokenHandler _handler = new();

    /// <param name="signingKeyPem">The ECDSA P-256 private key (PEM).</param>
    public IdentityTokenIssuer(string signingKeyPem, string keyId, string issuer = "crm-platform", string audience = "crm-services")
    {
        if (string.IsNullOrWhiteSpace(keyId)) throw new ArgumentException("A signing key needs its key id.", nameof(keyId));
        _credentials = new SigningCredentials(new ECDsaSecurityKey(TokenKeys.ReadPrivateKey(signingKeyPem)) { KeyId = keyId }, SecurityAlgorithms.EcdsaSha256);
        _issuer = issuer;
        _audience = audience;
    }

    public IdentityTokenIssuer(TenancyOptions options) : this(options.SigningKey, options.SigningKeyId, options.Issuer, options.Audience) { }

    public string KeyId => _credentials.Key.KeyId;

    public string Issue(string tenantId, IEnumerable<string> scopes, TimeSpan? lifetime = null, string subject = "local")
    {
        if (!TenantIds.IsValid(tenantId)) throw new ArgumentException($"Invalid tenant id '{tenantId}'.", nameof(tenantId));
        var life = lifetime ?? DefaultLifetime;
        if (life <= TimeSpan.Zero || life > MaxLifetime)
            throw new ArgumentOutOfRangeException(nameof(lifetime), life, $"A token lives more than 0 and at most {MaxLifetime.TotalHours} hours.");
        var now = DateTime.UtcNow;
        return _handler.CreateToken(new SecurityTokenDescriptor
        {
            Issuer = _issuer,
            Audience = _audience,
            IssuedAt = now,
            NotBefore = now.AddSeconds(-5),
            Expires = now + life,
            Subject = new ClaimsIdentity([
                new Claim(IdentityClaims.Subject, subject), new Claim(IdentityClaims.Tenant, tenantId), new Claim(IdentityClaims.Scope, string.Join(' ', scopes))]),
            SigningCredentials = _credentials,
        });
    }
}

/// <summary>
/// Verifies identity tokens with public keys only, picked by the token's <c>kid</c>: ES256 and nothing
/// else (no HMAC, so a public key cannot be turned into a shared secret; no unsigned tokens), this
/// platform's issuer and audience, in date, and no longer-lived than any issuer signs.
/// An ES256 signature costs about 20 times an HMAC to check, and a caller sends the same token many
/// times (the gateway's token for an API key lives for minutes), so a verified token is remembered
/// until it expires, by its exact text.
/// </summary>
public sealed class IdentityTokenVerifier
{
    private const int CacheLimit = 10_000;
    private readonly ConcurrentDictionary<string, (CallerIdentity Identity, DateTime Until)> _verified = new(StringComparer.Ordinal);
    private readonly JsonWebTokenHandler _handler = new();
    private readonly TokenValidationParameters _parameters;
    // Keys whose tokens may claim only the listed scopes (a service's workload key), by kid.
    private readonly Dictionary<string, HashSet<string>> _allowedScopes;

    public IdentityTokenVerifier(TenancyOptions options)
    {
        var keys = options.ConfiguredPublicKeys().Select(e => e.Key).ToList();
        _allowedScopes = keys.Where(k => k.Scopes.Count > 0).ToDictionary(k => k.KeyId, k => k.Scopes.ToHashSet(StringComparer.Ordinal), StringComparer.Ordinal);
        if (keys.Count == 0) throw new ArgumentException("Tenancy:PublicKeys is required.", nameof(options));
        _parameters = new TokenValidationParameters
        {
            ValidIssuer = options.Issuer,
            ValidAudience = options.Audience,
            IssuerSigningKeys = [.. keys.Select(k => new ECDsaSecurityKey(TokenKeys.ReadPublicKey(k.Pem)) { KeyId = k.KeyId })],
            // The kid picks the key; a token naming no configured key is refused, not tried against each.
            TryAllIssuerSigningKeys = false,
            ValidAlgorithms = [SecurityAlgorithms.EcdsaSha256],
            RequireSignedTokens = true,
            RequireExpirationTime = true,
            ClockSkew = TimeSpan.FromSeconds(30),
        };
    }

    public async Task<CallerIdentity?> VerifyAsync(string token)
    {
        if (_verified.TryGetValue(token, out var hit))
        {
            if (hit.Until > DateTime.UtcNow) return hit.Identity;
            _verified.TryRemove(token, out _);
        }
        var result = await _handler.ValidateTokenAsync(token, _parameters);
        if (!result.IsValid || result.SecurityToken is not JsonWebToken jwt) return null;
        if (jwt.ValidTo - jwt.IssuedAt > IdentityClaims.MaxLifetime) return null;
        var tenant = result.Claims.TryGetValue(IdentityClaims.Tenant, out var t) ? t as string : null;
        if (tenant is null || !TenantIds.IsValid(tenant)) return null;
        var scopes = (result.Claims.TryGetValue(IdentityClaims.Scope, out var s) ? s as string : null) ?? "";
        var subject = (result.Claims.TryGetValue(IdentityClaims.Subject, out var sub) ? sub as string : null) ?? "";
        var identity = new CallerIdentity(tenant, scopes.Split(' ', StringSplitOptions.RemoveEmptyEntries).ToHashSet(StringComparer.Ordinal), subject);
        if (_allowedScopes.TryGetValue(jwt.Kid, out var allowed) && !identity.Scopes.IsSubsetOf(allowed)) return null;
        Remember(token, identity, jwt.ValidTo);
        return identity;
    }

    /// <summary>Bounded: past the limit, expired entries go first, and then all.</summary>
    private void Remember(string token, CallerIdentity identity, DateTime expires)
    {
        if (_verified.Count >= CacheLimit)
        {
            var now = DateTime.UtcNow;
            foreach (var (k, e) in _verified)
                if (e.Until <= now) _verified.TryRemove(k, out _);
            if (_verified.Count >= CacheLimit) _verified.Clear();
        }
        _verified[token] = (identity, expires);
    }
}
