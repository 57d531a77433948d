using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;
using Crm.BuildingBlocks.Tenancy;
using Crm.Contacts.V1;
using Grpc.Core;

namespace Crm.Gateway.Auth;

/// <summary>
/// API key → identity token. Keys are resolved by Contacts (which owns workspaces and their keys),
/// with the gateway's own token carrying the apikeys.verify scope, and remembered for
/// <see cref="GatewayOptions.KeyCacheFor"/> by the key's hash, never the key itself. A string that is
/// not shaped like a key is refused here, without asking Contacts; concurrent first uses of one key
/// share one question.
/// </summary>
public sealed partial class ApiKeyExchange(GatewayOptions options, ContactsChannel contacts, IdentityTokenIssuer tokens, TimeProvider clock)
{
    private const int CacheLimit = 100_000;
    private readonly ConcurrentDictionary<string, Entry> _cache = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, Lazy<Task<Resolved?>>> _inFlight = new(StringComparer.Ordinal);

    public sealed record Resolved(string KeyId, string TenantId, string Token, DateTimeOffset? ExpiresAt);

    private sealed record Entry(Resolved? Resolved, DateTimeOffset Until);

    /// <summary>Looks like an API key (so it is not an identity token to pass on).</summary>
    public static bool IsApiKey(string credential) => credential.StartsWith("crm_", StringComparison.Ordinal);

    /// <summary>crm_ + the key id (32 hex) + _ + the secret (32 bytes, base64url without padding).</summary>
    [GeneratedRegex("^crm_[0-9a-f]{32}_[A-Za-z0-9_-]{43}$")]
    private static partial Regex KeyShape();

    /// <returns>The key's identity token, or null when the key is malformed, unknown, revoked or expired.</returns>
    /// <exception cref="RpcException">Contacts could not answer (the caller may retry).</exception>
    public async Task<Resolved?> ResolveAsync(string key, CancellationToken ct)
    {
        if (!KeyShape().IsMatch(key)) return null;
        var id = Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(key)));
        if (_cache.TryGetValue(id, out var cached) && cached.Until > clock.GetUtcNow()) return cached.Resolved;

        return await _inFlight.GetOrAdd(id, _ => new Lazy<Task<Resolved?>>(() => AskContactsAsync(id, key))).Value.WaitAsync(ct);
    }

    private async Task<Resolved?> AskContactsAsync(string id, string key)
    {
        try
        {
            var identity = await new WorkspaceService.WorkspaceServiceClient(contacts.Channel).AuthenticateApiKeyAsync(
                new AuthenticateApiKeyRequest { Key = key },
                contacts.GatewayCredentials(),
                deadline: clock.GetUtcNow().UtcDateTime.AddSeconds(5));
            // The token outlives the cache entry, so a request never carries one that expires on its way.
            var resolved = new Resolved(identity.KeyId, identity.TenantId,
                tokens.Issue(identity.TenantId, identity.Scopes, options.KeyCacheFor + TimeSpan.FromMinutes(5), $"api-key:{identity.KeyId}"),
                identity.ExpiresAt?.ToDateTimeOffset());
            Remember(id, resolved);
            return resolved;
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.NotFound)
        {
            // Unknown or revoked: remembered too, so repeating a bad key does not reach Contacts each time.
            Remember(id, null);
            return null;
        }
        finally
        {
            // Dropped once the answer is in the cache (or, when Contacts failed, so the next caller asks again).
            _inFlight.TryRemove(id, out _);
        }
    }

    /// <summary>Bounded: expired entries go first, then the unknown keys, and only then the rest.</summary>
    private void Remember(string id, Resolved? resolved)
    {
        var now = clock.GetUtcNow();
        if (_cache.Count >= CacheLimit)
        {
            foreach (var (k, e) in _cache)
                if (e.Until <= now) _cache.TryRemove(k, out _);
            if (_cache.Count >= CacheLimit)
                foreach (var (k, e) in _cache)
                    if (e.Resolved is null) _cache.TryRemove(k, out _);
            if (_cache.Count >= CacheLimit) _cache.Clear();
        }
        // A key that expires sooner is asked about again when it does (and then refused).
        var until = now + options.KeyCacheFor;
        if (resolved?.ExpiresAt is { } expires && expires < until) until = expires;
        _cache[id] = new Entry(resolved, until);
    }
}
