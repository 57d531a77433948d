using Crm.BuildingBlocks.Data;
using System.Buffers.Text;
using System.Security.Cryptography;
using Crm.BuildingBlocks.Errors;
using Crm.BuildingBlocks.Tenancy;
using Crm.Contacts.V1;
using Dapper;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Npgsql;

namespace Crm.Contacts.Features.Workspaces;

/// <summary>
/// A workspace's API keys. A key reads <c>crm_&lt;key id&gt;_&lt;secret&gt;</c>: the key id finds the
/// row, the secret (32 random bytes) is checked against its SHA-256 in constant time. The gateway
/// exchanges a key for a short-lived identity token; the services never see keys.
/// </summary>
public sealed class ApiKeys(TenantDb db)
{
    private const string Prefix = "crm_";

    /// <summary>The scopes a key may be given (the gateway's own apikeys.verify is not one of them).</summary>
    private static readonly HashSet<string> Grantable =
        [Scope.All, Scope.ContactsRead, Scope.ContactsWrite, Scope.WorkspaceAdmin, Scope.DeliveryRead, Scope.DeliverySend, Scope.DeliveryAdmin,
         Scope.SegmentsRead, Scope.SegmentsWrite, Scope.CampaignsRead, Scope.CampaignsWrite, Scope.CampaignsSend];

    public async Task<CreateApiKeyResponse> CreateAsync(CallerIdentity creator, CreateApiKeyRequest request, CancellationToken ct)
    {
        // A key cannot make keys: revoking a leaked admin key must not leave keys it made behind.
        if (creator.Subject.StartsWith("api-key:", StringComparison.Ordinal))
            throw new RpcException(new Status(StatusCode.PermissionDenied, "An API key cannot create API keys; use a workspace admin's identity token."));
        var v = new Validation();
        if (request.Name.Trim().Length is 0 or > 100) v.Add("name", "is required (1 to 100 characters)");
        if (request.Scopes.Count == 0) v.Add("scopes", "name at least one scope");
        foreach (var scope in request.Scopes)
        {
            if (!Grantable.Contains(scope)) v.Add("scopes", $"'{scope}' is not a scope a key can have ({string.Join(", ", Grantable.Order())})");
            else if (!creator.Has(scope)) v.Add("scopes", $"'{scope}' is more than the caller has");
        }
        var createdAt = DateTime.UtcNow;
        DateTime? expiresAt = null;
        if (request.ExpiresAt is { } expires)
        {
            if (!TryToDateTime(expires, out var at)) v.Add("expires_at", "is not a valid time");
            else if (at <= createdAt) v.Add("expires_at", "must be in the future");
            else expiresAt = at;
        }
        v.ThrowIfInvalid();

        var keyId = Guid.CreateVersion7();
        var secret = RandomNumberGenerator.GetBytes(32);
        await using (var tx = await db.BeginAsync(creator.TenantId, ct))
        {
            await tx.Connection.ExecuteAsync("""
            INSERT INTO api_keys (key_id, tenant_id, name, scopes, secret_hash, created_at, expires_at)
            VALUES (@keyId, @tenant, @name, @scopes, @hash, @createdAt, @expiresAt)
            """, new { keyId, tenant = creator.TenantId, name = request.Name.Trim(), scopes = request.Scopes.Distinct().ToArray(), hash = SHA256.HashData(secret), createdAt, expiresAt });
            await tx.CommitAsync(ct);
        }
        return new CreateApiKeyResponse
        {
            Key = ToProto(new Row { KeyId = keyId, Name = request.Name.Trim(), Scopes = [.. request.Scopes.Distinct()], CreatedAt = createdAt, ExpiresAt = expiresAt }),
            Secret = $"{Prefix}{keyId:N}_{Base64Url.EncodeToString(secret)}",
        };
    }

    public async Task<IReadOnlyList<ApiKey>> ListAsync(string tenant, CancellationToken ct)
    {
        await using var scope = await db.BeginAsync(tenant, ct);
        var conn = scope.Connection;
        return [.. (await conn.QueryAsync<Row>(
            $"SELECT {Columns} FROM api_keys WHERE tenant_id = @tenant ORDER BY created_at", new { tenant })).Select(ToProto)];
    }

    public async Task<ApiKey> RevokeAsync(string tenant, string keyId, CancellationToken ct)
    {
        if (!Guid.TryParse(keyId, out var id)) throw new InvalidArgumentException("key_id", "is not a key id");
        await using var scope = await db.BeginAsync(tenant, ct);
        var conn = scope.Connection;
        var row = await conn.QuerySingleOrDefaultAsync<Row>($"""
            UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE tenant_id = @tenant AND key_id = @id
            RETURNING {Columns}
            """, new { tenant, id }) ?? throw new NotFoundException($"API key {keyId} not found.");
        await scope.CommitAsync(ct);
        return ToProto(row);
    }

    /// <summary>The workspace and scopes of a working key; null for a malformed, unknown, wrong, revoked or expired one.</summary>
    public async Task<ApiKeyIdentity?> AuthenticateAsync(string key, CancellationToken ct)
    {
        if (!key.StartsWith(Prefix, StringComparison.Ordinal) || key.Length < Prefix.Length + 34 || key[Prefix.Length + 32] != '_'
            || !Guid.TryParseExact(key.AsSpan(Prefix.Length, 32), "N", out var keyId)
            || !TryDecodeSecret(key[(Prefix.Length + 33)..], out var secret))
            return null;
        // Cross-tenant by design: the key names its workspace only through its row.
        await using var scope = await db.BeginCrossTenantAsync("API-key lookup: which workspace a key belongs to", ct);
        var conn = scope.Connection;
        var row = await conn.QuerySingleOrDefaultAsync<(string TenantId, string[] Scopes, byte[] SecretHash, DateTime? ExpiresAt)>("""
            SELECT tenant_id, scopes, secret_hash, expires_at FROM api_keys
            WHERE key_id = @keyId AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())
            """, new { keyId });
        if (row.SecretHash is null || !CryptographicOperations.FixedTimeEquals(row.SecretHash, SHA256.HashData(secret))) return null;
        var identity = new ApiKeyIdentity { TenantId = row.TenantId, Scopes = { row.Scopes }, KeyId = keyId.ToString() };
        if (row.ExpiresAt is { } expires) identity.ExpiresAt = Utc(expires);
        return identity;
    }

    public const int MaxUsesPerCall = 10_000;

    /// <summary>
    /// Keeps the latest use of each key, as the gateway saw them (one statement for the whole batch).
    /// Deliberately across workspaces, like <see cref="AuthenticateAsync"/>: the gateway reports the
    /// keys of every workspace at once. A time ahead of this server's clock counts as now.
    /// </summary>
    public async Task RecordUseAsync(IReadOnlyList<ApiKeyUse> uses, CancellationToken ct)
    {
        var v = new Validation();
        if (uses.Count > MaxUsesPerCall) v.Add("uses", $"at most {MaxUsesPerCall} a call");
        var ids = new Guid[uses.Count];
        var times = new DateTime[uses.Count];
        for (var i = 0; i < uses.Count; i++)
        {
            if (!Guid.TryParse(uses[i].KeyId, out ids[i])) v.Add($"uses[{i}].key_id", "is not a key id");
            if (uses[i].UsedAt is null || !TryToDateTime(uses[i].UsedAt, out times[i])) v.Add($"uses[{i}].used_at", "is required (a valid time)");
        }
        v.ThrowIfInvalid();
        if (uses.Count == 0) return;
        // Cross-tenant by design: the gateway reports the keys of every workspace in one batch.
        await using var scope = await db.BeginCrossTenantAsync("API-key use: last_used_at of every workspace's keys, batched by the gateway", ct);
        await scope.Connection.ExecuteAsync(new CommandDefinition("""
            UPDATE api_keys k SET last_used_at = u.used_at
            FROM (SELECT key_id, least(max(used_at), now()) AS used_at
                  FROM unnest(@ids::uuid[], @times::timestamptz[]) AS t(key_id, used_at) GROUP BY key_id) u
            WHERE k.key_id = u.key_id AND (k.last_used_at IS NULL OR k.last_used_at < u.used_at)
            """, new { ids, times }, cancellationToken: ct));
        await scope.CommitAsync(ct);
    }

    private const string Columns = "key_id, name, scopes, created_at, revoked_at, expires_at, last_used_at";

    private sealed class Row
    {
        public Guid KeyId { get; init; }
        public string Name { get; init; } = "";
        public string[] Scopes { get; init; } = [];
        public DateTime CreatedAt { get; init; }
        public DateTime? RevokedAt { get; init; }
        public DateTime? ExpiresAt { get; init; }
        public DateTime? LastUsedAt { get; init; }
    }

    private static ApiKey ToProto(Row r)
    {
        var key = new ApiKey { KeyId = r.KeyId.ToString(), Name = r.Name, Scopes = { r.Scopes }, CreatedAt = Utc(r.CreatedAt) };
        if (r.RevokedAt is { } revoked) key.RevokedAt = Utc(revoked);
        if (r.ExpiresAt is { } expires) key.ExpiresAt = Utc(expires);
        if (r.LastUsedAt is { } used) key.LastUsedAt = Utc(used);
        return key;
    }

    private static bool TryToDateTime(Timestamp t, out DateTime value)
    {
        value = default;
                try
        {
            value = t.ToDateTime();
            return true;
        }
        catch (InvalidOperationException)
        {
            return false; // outside 0001-01-01 .. 9999-12-31
        }
    }

    private static Timestamp Utc(DateTime t) => Timestamp.FromDateTime(DateTime.SpecifyKind(t, DateTimeKind.Utc));

    /// <summary>32 bytes in their one spelling (no padding, whitespace or stray bits), so a key has no aliases.</summary>
    private static bool TryDecodeSecret(string text, out byte[] secret)
    {
        secret = new byte[32];
        try
        {
            return Base64Url.TryDecodeFromChars(text, secret, out var written) && written == 32 && Base64Url.EncodeToString(secret) == text;
        }
        catch (FormatException)
        {
            return false; // not base64url, or stray bits in the last character
        }
    }
}
