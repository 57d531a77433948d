using Crm.BuildingBlocks.Data;
using System.Collections.Concurrent;
using Crm.BuildingBlocks.Errors;
using Crm.BuildingBlocks.Tenancy;
using Crm.Contacts.V1;
using Dapper;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Npgsql;
using PhoneNumbers;

namespace Crm.Contacts.Features.Workspaces;

public sealed record WorkspaceSettings(string TenantId, string Name, string DefaultRegion, string TimeZone, DateTime CreatedAt)
{
    public TimeZoneInfo Zone => TimeZoneInfo.FindSystemTimeZoneById(TimeZone);
}

/// <summary>Per-tenant settings, read often (every phone number needs the default region), so cached briefly.</summary>
public sealed class Workspaces(TenantDb db)
{
    private static readonly TimeSpan CacheFor = TimeSpan.FromSeconds(30);
    private readonly ConcurrentDictionary<string, (WorkspaceSettings Settings, DateTime Until)> _cache = new();

    public async Task<WorkspaceSettings> GetAsync(string tenantId, CancellationToken ct)
    {
        if (_cache.TryGetValue(tenantId, out var hit) && hit.Until > DateTime.UtcNow) return hit.Settings;
        await using var scope = await db.BeginAsync(tenantId, ct);
        var conn = scope.Connection;
        var settings = await conn.QuerySingleOrDefaultAsync<WorkspaceSettings>(
            "SELECT tenant_id AS TenantId, name, default_region AS DefaultRegion, time_zone AS TimeZone, created_at AS CreatedAt FROM workspaces WHERE tenant_id = @tenantId",
            new { tenantId })
            // A tenant that never configured its workspace gets the platform defaults (Korea first).
            ?? new WorkspaceSettings(tenantId, tenantId, "KR", "Asia/Seoul", DateTime.UnixEpoch);
        _cache[tenantId] = (settings, DateTime.UtcNow + CacheFor);
        return settings;
    }

    public async Task<WorkspaceSettings> UpdateAsync(string tenantId, string? name, string? region, string? timeZone, CancellationToken ct)
    {
        var v = new Validation();
        if (region is not null && !PhoneNumberUtil.GetInstance().GetSupportedRegions().Contains(region))
            v.Add("default_region", $"'{region}' is not an ISO 3166 region with a phone numbering plan");
        if (timeZone is not null && !TimeZoneInfo.TryFindSystemTimeZoneById(timeZone, out _))
            v.Add("time_zone", $"'{timeZone}' is not an IANA time zone");
        if (name is not null && (name.Length == 0 || name.Length > 200))
            v.Add("name", "must be 1 to 200 characters");
        v.ThrowIfInvalid();

        await using var scope = await db.BeginAsync(tenantId, ct);
        var conn = scope.Connection;
        var settings = await conn.QuerySingleAsync<WorkspaceSettings>("""
            INSERT INTO workspaces (tenant_id, name, default_region, time_zone)
            VALUES (@tenantId, coalesce(@name, @tenantId), coalesce(@region, 'KR'), coalesce(@timeZone, 'Asia/Seoul'))
            ON CONFLICT (tenant_id) DO UPDATE SET
                name = coalesce(@name, workspaces.name),
                default_region = coalesce(@region, workspaces.default_region),
                time_zone = coalesce(@timeZone, workspaces.time_zone),
                updated_at = now()
            RETURNING tenant_id AS TenantId, name, default_region AS DefaultRegion, time_zone AS TimeZone, created_at AS CreatedAt
            """, new { tenantId, name, region, timeZone });
        await scope.CommitAsync(ct);
        _cache.TryRemove(tenantId, out _);
        return settings;
    }
}

public sealed class WorkspaceGrpcService(Workspaces workspaces, ApiKeys apiKeys) : WorkspaceService.WorkspaceServiceBase
{
    public override Task<CreateApiKeyResponse> CreateApiKey(CreateApiKeyRequest request, ServerCallContext context) =>
        apiKeys.CreateAsync(context.Caller(Scope.WorkspaceAdmin), request, context.CancellationToken);

    public override async Task<ListApiKeysResponse> ListApiKeys(ListApiKeysRequest request, ServerCallContext context) =>
        new() { Keys = { await apiKeys.ListAsync(context.Caller(Scope.WorkspaceAdmin).TenantId, context.CancellationToken) } };

    public override Task<ApiKey> RevokeApiKey(RevokeApiKeyRequest request, ServerCallContext context) =>
        apiKeys.RevokeAsync(context.Caller(Scope.WorkspaceAdmin).TenantId, request.KeyId, context.CancellationToken);

    public override async Task<ApiKeyIdentity> AuthenticateApiKey(AuthenticateApiKeyRequest request, ServerCallContext context)
    {
        RequireGateway(context);
        return await apiKeys.AuthenticateAsync(request.Key, context.CancellationToken)
            ?? throw new NotFoundException("No such API key (unknown, revoked, expired or malformed).");
    }

    public override async Task<RecordApiKeyUseResponse> RecordApiKeyUse(RecordApiKeyUseRequest request, ServerCallContext context)
    {
        RequireGateway(context);
        await apiKeys.RecordUseAsync(request.Uses, context.CancellationToken);
        return new RecordApiKeyUseResponse();
    }

    /// <summary>Only an explicit apikeys.verify scope (the gateway's), never "*": these calls cross workspaces.</summary>
    private static void RequireGateway(ServerCallContext context)
    {
        if (!context.Caller(Scope.ApiKeysVerify).Scopes.Contains(Scope.ApiKeysVerify))
            throw new RpcException(new Status(StatusCode.PermissionDenied, $"The token lacks the '{Scope.ApiKeysVerify}' scope."));
    }

    public override async Task<Workspace> GetWorkspace(GetWorkspaceRequest request, ServerCallContext context)
    {
        var caller = context.Caller(Scope.ContactsRead);
        return ToProto(await workspaces.GetAsync(caller.TenantId, context.CancellationToken));
    }

    public override async Task<Workspace> UpdateWorkspace(UpdateWorkspaceRequest request, ServerCallContext context)
    {
        var caller = context.Caller(Scope.WorkspaceAdmin);
        var settings = await workspaces.UpdateAsync(caller.TenantId,
            request.HasName ? request.Name : null,
            request.HasDefaultRegion ? request.DefaultRegion.ToUpperInvariant() : null,
            request.HasTimeZone ? request.TimeZone : null,
            context.CancellationToken);
        return ToProto(settings);
    }

    private static Workspace ToProto(WorkspaceSettings s) => new()
    {
        TenantId = s.TenantId,
        Name = s.Name,
        DefaultRegion = s.DefaultRegion,
        TimeZone = s.TimeZone,
        CreatedAt = Timestamp.FromDateTime(DateTime.SpecifyKind(s.CreatedAt, DateTimeKind.Utc)),
    };
}
