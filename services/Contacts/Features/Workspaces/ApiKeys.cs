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
        [Scope.All, Scope.ContactsRead, Scope.ContactsWrite, Scope.WorkspaceAdmin, Scope.DeliveryRead, Scope.DeliverySend, Scope.DeliveryAdmin];

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
        v.ThrowIfInvalid();

        var keyId = Guid.CreateVersion7();
        var secret = RandomNumberGenerator.GetBytes(32);
        var createdAt = DateTime.UtcNow;
        await using (var tx = await db.BeginAsync(creator.TenantId, ct))
        {
            await tx.Connection.ExecuteAsync("""
            INSERT INTO api_keys (key_id, tenant_id, name, scopes, secret_hash, created_at)
            VALUES (@keyId, @tenant, @name, @scopes, @hash, @createdAt)
            """, new { keyId, tenant = creator.TenantId, name = request.Name.Trim(), scopes = request.Scopes.Distinct().ToArray(), hash = SHA256.HashData(secret), createdAt });
            await tx.CommitAsync(ct);
        }
        return new CreateApiKeyResponse
        {
            Key = ToProto(new Row { KeyId = keyId, Name = request.Name.Trim(), Scopes = [.. request.Scopes.Distinct()], CreatedAt = createdAt }),
            Secret = $"{Prefix}{keyId:N}_{Base64Url.EncodeToString(secret)}",
        };
    }

    public async Task<IReadOnlyList<ApiKey>> ListAsync(string tenant, CancellationToken ct)
    {
        await using var scope = await db.BeginAsync(tenant, ct);
        var conn = scope.Connection;
        return [.. (await conn.QueryAsync<Row>(
            "SELECT key_id, name, scopes, created_at, revoked_at FROM api_keys WHERE tenant_id = @tenant ORDER BY created_at", new { tenant })).Select(ToProto)];
    }

    public async Task<ApiKey> RevokeAsync(string tenant, string keyId, CancellationToken ct)
    {
        if (!Guid.TryParse(keyId, out var id)) throw new InvalidArgumentException("key_id", "is not a key id");
        await using var scope = await db.BeginAsync(tenant, ct);
        var conn = scope.Connection;
        var row = await conn.QuerySingleOrDefaultAsync<Row>("""
            UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE tenant_id = @tenant AND key_id = @id
            RETURNING key_id, name, scopes, created_at, revoked_at
            """, new { tenant, id }) ?? throw new NotFoundException($"API key {keyId} not found.");
        await scope.CommitAsync(ct);
        return ToProto(row);
    }

    /// <summary>The workspace and scopes of a working key; null for a malformed, unknown, wrong or revoked one.</summary>
    public async Task<ApiKeyIdentity?> AuthenticateAsync(string key, CancellationToken ct)
    {
        if (!key.StartsWith(Prefix, StringComparison.Ordinal) || key.Length < Prefix.Length + 34 || key[Prefix.Length + 32] != '_'
            || !Guid.TryParseExact(key.AsSpan(Prefix.Length, 32), "N", out var keyId)
            || !TryDecodeSecret(key[(Prefix.Length + 33)..], out var secret))
            return null;
        // Cross-tenant by design: the key names its workspace only through its row.
        await using var scope = await db.BeginCrossTenantAsync("API-key lookup: which workspace a key belongs to", ct);
        var conn = scope.Connection;
        var row = await conn.QuerySingleOrDefaultAsync<(string TenantId, string[] Scopes, byte[] SecretHash)>(
            "SELECT tenant_id, scopes, secret_hash FROM api_keys WHERE key_id = @keyId AND revoked_at IS NULL", new { keyId });
        if (row.SecretHash is null || !CryptographicOperations.FixedTimeEquals(row.SecretHash, SHA256.HashData(secret))) return null;
        return new ApiKeyIdentity { TenantId = row.TenantId, Scopes = { row.Scopes }, KeyId = keyId.ToString() };
    }

    private sealed class Row
    {
        public Guid KeyId { get; init; }
        public string Name { get; init; } = "";
        public string[] Scopes { get; init; } = [];
        public DateTime CreatedAt { get; init; }
        public DateTime? RevokedAt { get; init; }
    }

    private static ApiKey ToProto(Row r)
    {
        var key = new ApiKey { KeyId = r.KeyId.ToString(), Name = r.Name, Scopes = { r.Scopes }, CreatedAt = Timestamp.FromDateTime(DateTime.SpecifyKind(r.CreatedAt, DateTimeKind.Utc)) };
        if (r.RevokedAt is { } revoked) key.RevokedAt = Timestamp.FromDateTime(DateTime.SpecifyKind(revoked, DateTimeKind.Utc));
        return key;
    }

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
