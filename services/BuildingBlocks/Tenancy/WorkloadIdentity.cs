using System.Collections.Concurrent;
using Grpc.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace Crm.BuildingBlocks.Tenancy;

/// <summary>
/// A service calling another as itself, for a tenant, with no user present (a scheduled campaign reading its
/// segment's members): tokens signed with the service's own Tenancy:WorkloadKey, whose public key the
/// receiving service lists with an allow-list of scopes. Tokens are short-lived and reused until near expiry.
/// </summary>
public sealed class WorkloadIdentity
{
    private static readonly TimeSpan Lifetime = TimeSpan.FromMinutes(10);
    private readonly IdentityTokenIssuer? _issuer;
    private readonly string _subject;
    private readonly ConcurrentDictionary<string, (string Token, DateTime Renew)> _tokens = new(StringComparer.Ordinal);

    public WorkloadIdentity(TenancyOptions options, string subject)
    {
        _subject = subject;
        if (!string.IsNullOrWhiteSpace(options.WorkloadKey))
            _issuer = new IdentityTokenIssuer(options.WorkloadKey, options.WorkloadKeyId, options.Issuer, options.Audience);
    }

    public bool IsConfigured => _issuer is not null;

    /// <summary>Call options carrying a token for the tenant with exactly these scopes.</summary>
    public CallOptions For(string tenant, CancellationToken ct, params string[] scopes)
    {
        var issuer = _issuer ?? throw new InvalidOperationException("Tenancy:WorkloadKey is not configured: this service cannot call others as itself.");
        var key = tenant + "|" + string.Join(' ', scopes);
        var now = DateTime.UtcNow;
        if (!_tokens.TryGetValue(key, out var t) || t.Renew <= now)
        {
            t = (issuer.Issue(tenant, scopes, Lifetime, _subject), now + Lifetime / 2);
            if (_tokens.Count > 10_000) _tokens.Clear();
            _tokens[key] = t;
        }
        return new CallOptions(new Metadata { { "authorization", "Bearer " + t.Token } }, cancellationToken: ct);
    }
}

public static class WorkloadIdentityServices
{
    /// <summary>Registers <see cref="WorkloadIdentity"/> from the Tenancy section (checked by the verifier's validation).</summary>
    public static IServiceCollection AddWorkloadIdentity(this IServiceCollection services, string subject)
    {
        services.AddSingleton(sp => new WorkloadIdentity(sp.GetRequiredService<IOptions<TenancyOptions>>().Value, subject));
        return services;
    }
}
