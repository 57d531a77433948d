using System.Globalization;
using Crm.BuildingBlocks.Tenancy;

namespace Crm.Cli;

/// <summary>
/// Local tokens, signed with the issuer's private key as make run writes it: CRM_SIGNING_KEY (the PEM
/// itself) or CRM_SIGNING_KEY_FILE (its path), and CRM_SIGNING_KEY_ID (the kid the services know it by).
/// </summary>
public static class Tokens
{
    private static IdentityTokenIssuer Issuer()
    {
        var pem = Environment.GetEnvironmentVariable("CRM_SIGNING_KEY") is { Length: > 0 } text ? text
            : Environment.GetEnvironmentVariable("CRM_SIGNING_KEY_FILE") is { Length: > 0 } path ? File.ReadAllText(path)
            : throw new InvalidOperationException("Set CRM_SIGNING_KEY_FILE (or CRM_SIGNING_KEY) to the issuer's private key, e.g. .local/token-keys/signing-key.pem as make run writes it.");
        var keyId = Environment.GetEnvironmentVariable("CRM_SIGNING_KEY_ID") is { Length: > 0 } kid ? kid
            : throw new InvalidOperationException("Set CRM_SIGNING_KEY_ID to the signing key's id (make run writes it to .local/token-keys/key-id).");
        try
        {
            return new IdentityTokenIssuer(pem, keyId);
        }
        catch (FormatException e)
        {
            throw new InvalidOperationException($"CRM_SIGNING_KEY(_FILE) {e.Message} (the issuer's ECDSA P-256 private key, PEM).", e);
        }
    }

    public static string Issue(string tenant, IEnumerable<string> scopes, TimeSpan? lifetime = null) =>
        Issuer().Issue(tenant, scopes, lifetime ?? IdentityTokenIssuer.DefaultLifetime, "crm-cli");

    /// <summary>"15m", "2h", "90s" or a TimeSpan ("00:15:00"); more than 0 and at most the issuer's maximum (12 h).</summary>
    public static TimeSpan ParseLifetime(string text)
    {
        var value = text.Trim();
        TimeSpan? parsed = value.Length > 1 && double.TryParse(value[..^1], NumberStyles.Float, CultureInfo.InvariantCulture, out var n)
            ? char.ToLowerInvariant(value[^1]) switch
            {
                's' => TimeSpan.FromSeconds(n),
                'm' => TimeSpan.FromMinutes(n),
                'h' => TimeSpan.FromHours(n),
                _ => null,
            }
            : TimeSpan.TryParse(value, CultureInfo.InvariantCulture, out var span) ? span : null;
        if (parsed is not { } lifetime)
            throw new ArgumentException($"--lifetime '{text}' is not a duration (e.g. 15m, 2h, 90s).");
        if (lifetime <= TimeSpan.Zero || lifetime > IdentityTokenIssuer.MaxLifetime)
            throw new ArgumentException($"--lifetime must be more than 0 and at most {IdentityTokenIssuer.MaxLifetime.TotalHours:0} h.");
        return lifetime;
    }
}
