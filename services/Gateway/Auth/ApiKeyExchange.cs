using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;
using Crm.BuildingBlocks.Tenancy;
using Crm.Contacts.V1;
using Grpc.Core;

namespace Crm.Gateway.Auth;

/// <summary>
/// API key → identity token. Keys are resolved by Contacts (which owns workspaces and their keys),
/// with the gateway's own token carrying the apikeys.verify scope, and remembered for
/// <see cref="GatewayOptions.KeyCacheFor"/> by the key's hash, never the key itself.
/// </summary>
public sealed class ApiKeyExchange(GatewayOptions options, ContactsChannel contacts, IdentityTokens tokens, TimeProvider clock)
{
    private readonly ConcurrentDictionary<string, Entry> _cache = new(StringComparer.Ordinal);

    public sealed record Resolved(string KeyId, string TenantId, string Token);

    private sealed record Entry(Resolved? Resolved, DateTimeOffset Until);

    public static bool IsApiKey(string credential) => credential.StartsWith("crm_", StringComparison.Ordinal);

    /// <returns>The key's identity token, or null when the key is unknown, revoked or malformed.</returns>
    public async Task<Resolved?> ResolveAsync(string key, CancellationToken ct)
    {
        var id = Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(key)));
        var now = clock.GetUtcNow();
        if (_cache.TryGetValue(id, out var cached) && cached.Until > now) return cached.Resolved;

        Resolved? resolved = null;
        try
        {
            var identity = await new WorkspaceService.WorkspaceServiceClient(contacts.Channel).AuthenticateApiKeyAsync(
                new AuthenticateApiKeyRequest { Key = key },
                new Metadata { { "authorization", "Bearer " + tokens.Issue("gateway", [Scope.ApiKeysVerify], TimeSpan.FromMinutes(1), "gateway") } },
                cancellationToken: ct);
            // The token outlives the cache entry, so a request never carries one that expires on its way.
            resolved = new Resolved(identity.KeyId, identity.TenantId,
                tokens.Issue(identity.TenantId, identity.Scopes, options.KeyCacheFor + TimeSpan.FromMinutes(5), $"api-key:{identity.KeyId}"));
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.NotFound)
        {
            // Unknown or revoked: remembered too, so a stream of bad keys does not reach Contacts each time.
        }
        if (_cache.Count > 100_000) _cache.Clear();
        _cache[id] = new Entry(resolved, now + options.KeyCacheFor);
        return resolved;
    }

}
