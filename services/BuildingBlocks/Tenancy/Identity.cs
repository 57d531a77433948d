using System.Security.Claims;
using System.Text;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace Crm.BuildingBlocks.Tenancy;

/// <summary>Who is calling: the tenant (workspace) and what they may do. Never taken from a request body.</summary>
public sealed record CallerIdentity(string TenantId, IReadOnlySet<string> Scopes, string Subject)
{
    public bool Has(string scope) => Scopes.Contains(scope) || Scopes.Contains(Scope.All);
}

public static class Scope
{
    public const string All = "*";
    public const string ContactsRead = "contacts.read";
    public const string ContactsWrite = "contacts.write";
    public const string WorkspaceAdmin = "workspace.admin";
    public const string DeliveryRead = "delivery.read";
    public const string DeliverySend = "delivery.send";
    public const string DeliveryAdmin = "delivery.admin";
    /// <summary>The gateway's own: resolve any workspace's API key. Not included in "*".</summary>
    public const string ApiKeysVerify = "apikeys.verify";
}

public sealed class TenancyOptions
{
    public const string Section = "Tenancy";

    /// <summary>Shared HMAC-SHA256 key (at least 32 bytes) of the gateway and the services.</summary>
    public string SigningKey { get; set; } = "";
    public string Issuer { get; set; } = "crm-platform";
    public string Audience { get; set; } = "crm-services";
}

/// <summary>
/// Issues and verifies the short-lived identity tokens (JWT, HS256) that the gateway puts in gRPC
/// metadata. Tests and local tooling use the issuer directly.
/// </summary>
public sealed class IdentityTokens
{
    private const string TenantClaim = "tenant";
    private const string ScopeClaim = "scope";
    private readonly TenancyOptions _options;
    private readonly SymmetricSecurityKey _key;
    private readonly JsonWebTokenHandler _handler = new();

    public IdentityTokens(TenancyOptions options)
    {
        var keyBytes = Encoding.UTF8.GetBytes(options.SigningKey);
        if (keyBytes.Length < 32)
            throw new InvalidOperationException("Tenancy:SigningKey must be at least 32 bytes.");
        _options = options;
        _key = new SymmetricSecurityKey(keyBytes);
    }

    public string Issue(string tenantId, IEnumerable<string> scopes, TimeSpan? lifetime = null, string subject = "local")
    {
        if (!TenantIds.IsValid(tenantId)) throw new ArgumentException($"Invalid tenant id '{tenantId}'.", nameof(tenantId));
        var now = DateTime.UtcNow;
        return _handler.CreateToken(new SecurityTokenDescriptor
        {
            Issuer = _options.Issuer,
            Audience = _options.Audience,
            IssuedAt = now,
            NotBefore = now.AddSeconds(-5),
            Expires = now + (lifetime ?? TimeSpan.FromMinutes(15)),
            Subject = new ClaimsIdentity([new Claim("sub", subject), new Claim(TenantClaim, tenantId), new Claim(ScopeClaim, string.Join(' ', scopes))]),
            SigningCredentials = new SigningCredentials(_key, SecurityAlgorithms.HmacSha256),
        });
    }

    public async Task<CallerIdentity?> VerifyAsync(string token)
    {
        var result = await _handler.ValidateTokenAsync(token, new TokenValidationParameters
        {
            ValidIssuer = _options.Issuer,
            ValidAudience = _options.Audience,
            IssuerSigningKey = _key,
            ValidAlgorithms = [SecurityAlgorithms.HmacSha256],
            ClockSkew = TimeSpan.FromSeconds(30),
        });
        if (!result.IsValid) return null;
        var tenant = result.Claims.TryGetValue(TenantClaim, out var t) ? t as string : null;
        if (tenant is null || !TenantIds.IsValid(tenant)) return null;
        var scopes = (result.Claims.TryGetValue(ScopeClaim, out var s) ? s as string : null) ?? "";
        var subject = (result.Claims.TryGetValue("sub", out var sub) ? sub as string : null) ?? "";
        return new CallerIdentity(tenant, scopes.Split(' ', StringSplitOptions.RemoveEmptyEntries).ToHashSet(StringComparer.Ordinal), subject);
    }
}

public static class TenantIds
{
    /// <summary>Tenant ids are slugs: lower-case letters, digits and '-', 1 to 63 characters.</summary>
    public static bool IsValid(string? id) =>
        !string.IsNullOrEmpty(id) && id.Length <= 63 && id.All(c => c is (>= 'a' and <= 'z') or (>= '0' and <= '9') or '-');
}
