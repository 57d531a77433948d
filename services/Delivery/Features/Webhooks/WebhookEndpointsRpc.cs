using System.Net.Sockets;
using Crm.BuildingBlocks.Data;
using Crm.BuildingBlocks.Errors;
using Crm.BuildingBlocks.Net;
using Crm.BuildingBlocks.Tenancy;
using Crm.Delivery.Features.Webhooks;
using Crm.Delivery.V1;
using Dapper;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;

namespace Crm.Delivery.Features;

/// <summary>The customer-webhook calls of crm.delivery.v1.DeliveryService: endpoints, their secrets and their deliveries.</summary>
public sealed partial class DeliveryGrpcService
{
    private static readonly TimeSpan DefaultRotationPeriod = TimeSpan.FromHours(24);
    private static readonly TimeSpan MaxRotationPeriod = TimeSpan.FromDays(7);
    private static readonly string[] UpdatablePaths = ["url", "event_types", "description", "enabled"];

    private sealed class EndpointRow
    {
        public Guid EndpointId { get; init; }
        public string Url { get; init; } = null!;
        public string Description { get; init; } = null!;
        public string[] EventTypes { get; init; } = null!;
        public bool Enabled { get; init; }
        public string DisabledReason { get; init; } = null!;
        public DateTime? DisabledAt { get; init; }
        public DateTime? PreviousSecretExpiresAt { get; init; }
        public DateTime CreatedAt { get; init; }
        public DateTime UpdatedAt { get; init; }

        public const string Columns =
            "endpoint_id, url, description, event_types, enabled, disabled_reason, disabled_at, previous_secret_expires_at, created_at, updated_at";
    }

    private sealed class DeliveryRow
    {
        public string DeliveryId { get; init; } = null!;
        public Guid EndpointId { get; init; }
        public string EventType { get; init; } = null!;
        public string Status { get; init; } = null!;
        public int Attempts { get; init; }
        public int? LastStatusCode { get; init; }
        public string LastError { get; init; } = null!;
        public DateTime CreatedAt { get; init; }
        public DateTime? LastAttemptAt { get; init; }
        public DateTime NextAttemptAt { get; init; }
        public DateTime? DeliveredAt { get; init; }
        public string Payload { get; init; } = null!;
    }

    public override async Task<WebhookEndpointWithSecret> CreateWebhookEndpoint(CreateWebhookEndpointRequest request, ServerCallContext context)
    {
        var caller = context.Caller(Scope.DeliveryAdmin);
        var e = request.Endpoint ?? throw new InvalidArgumentException("endpoint", "is required");
        await ValidateEndpointAsync(e, UpdatablePaths, context.CancellationToken);
        var id = Guid.NewGuid();
        var secret = WebhookSignature.NewSecret();
        var now = _clock.GetUtcNow().UtcDateTime;
        await using var scope = await _db.BeginAsync(caller.TenantId, context.CancellationToken);
        var row = await scope.Connection.QuerySingleAsync<EndpointRow>($"""
            INSERT INTO webhook_endpoints (tenant_id, endpoint_id, url, description, event_types, enabled, secret, created_at, updated_at)
            VALUES (@tenant, @id, @Url, @Description, @types, @Enabled, @sealed, @now, @now)
            RETURNING {EndpointRow.Columns}
            """, new
        {
            tenant = caller.TenantId, id, e.Url, e.Description, types = e.EventTypes.Distinct().ToArray(), e.Enabled,
            @sealed = _secrets.Seal(secret, WebhookSecrets.AssociatedData(caller.TenantId, id)), now,
        }, scope.Transaction);
        await scope.CommitAsync(context.CancellationToken);
        return new WebhookEndpointWithSecret { Endpoint = ToProto(row), Secret = secret };
    }

    public override async Task<ListWebhookEndpointsResponse> ListWebhookEndpoints(ListWebhookEndpointsRequest request, ServerCallContext context)
    {
        var caller = context.Caller(Scope.DeliveryRead);
        var pageSize = PageToken.Size(request.PageSize);
        Guid? after = null;
        if (PageToken.Decode(request.PageToken) is { } token)
            after = Guid.TryParse(token, out var last) ? last : throw new InvalidArgumentException("page_token", "is not a token returned by a previous call");
        await using var scope = await _db.BeginAsync(caller.TenantId, context.CancellationToken);
        var rows = (await scope.Connection.QueryAsync<EndpointRow>($"""
            SELECT {EndpointRow.Columns} FROM webhook_endpoints
            WHERE tenant_id = @tenant AND (@after::uuid IS NULL OR endpoint_id > @after)
            ORDER BY endpoint_id LIMIT @limit
            """, new { tenant = caller.TenantId, after, limit = pageSize + 1 }, scope.Transaction)).AsList();
        var response = new ListWebhookEndpointsResponse();
        response.Endpoints.AddRange(rows.Take(pageSize).Select(ToProto));
        if (rows.Count > pageSize) response.NextPageToken = PageToken.Encode(rows[pageSize - 1].EndpointId.ToString());
        return response;
    }

    public override async Task<WebhookEndpoint> GetWebhookEndpoint(GetWebhookEndpointRequest request, ServerCallContext context)
    {
        var caller = context.Caller(Scope.DeliveryRead);
        var id = EndpointId(request.EndpointId, "endpoint_id");
        await using var scope = await _db.BeginAsync(caller.TenantId, context.CancellationToken);
        return ToProto(await LoadEndpointAsync(scope, id));
    }

    public override async Task<WebhookEndpoint> UpdateWebhookEndpoint(UpdateWebhookEndpointRequest request, ServerCallContext context)
    {
        var caller = context.Caller(Scope.DeliveryAdmin);
        var e = request.Endpoint ?? throw new InvalidArgumentException("endpoint", "is required");
        var id = EndpointId(e.EndpointId, "endpoint.endpoint_id");
        var paths = request.UpdateMask is { Paths.Count: > 0 } mask ? mask.Paths.ToArray() : UpdatablePaths;
        var unknown = paths.Where(p => !UpdatablePaths.Contains(p)).ToList();
        if (unknown.Count > 0) throw new InvalidArgumentException("update_mask", $"'{string.Join("', '", unknown)}' cannot be updated (only {string.Join(", ", UpdatablePaths)})");
        await ValidateEndpointAsync(e, paths, context.CancellationToken);
        await using var scope = await _db.BeginAsync(caller.TenantId, context.CancellationToken);
        var row = await scope.Connection.QuerySingleOrDefaultAsync<EndpointRow>($"""
            UPDATE webhook_endpoints SET
                url = CASE WHEN @setUrl THEN @Url ELSE url END,
                event_types = CASE WHEN @setTypes THEN @types ELSE event_types END,
                description = CASE WHEN @setDescription THEN @Description ELSE description END,
                enabled = CASE WHEN @setEnabled THEN @Enabled ELSE enabled END,
                disabled_reason = CASE WHEN @setEnabled AND @Enabled THEN '' ELSE disabled_reason END,
                disabled_at = CASE WHEN @setEnabled AND @Enabled THEN NULL ELSE disabled_at END,
                updated_at = @now
            WHERE tenant_id = @tenant AND endpoint_id = @id
            RETURNING {EndpointRow.Columns}
            """, new
        {
            tenant = caller.TenantId, id, e.Url, types = e.EventTypes.Distinct().ToArray(), e.Description, e.Enabled,
            setUrl = paths.Contains("url"), setTypes = paths.Contains("event_types"), setDescription = paths.Contains("description"),
            setEnabled = paths.Contains("enabled"), now = _clock.GetUtcNow().UtcDateTime,
        }, scope.Transaction) ?? throw new NotFoundException($"Webhook endpoint {id} not found.");
        await scope.CommitAsync(context.CancellationToken);
        return ToProto(row);
    }

    public override async Task<DeleteWebhookEndpointResponse> DeleteWebhookEndpoint(DeleteWebhookEndpointRequest request, ServerCallContext context)
    {
        var caller = context.Caller(Scope.DeliveryAdmin);
        var id = EndpointId(request.EndpointId, "endpoint_id");
        await using var scope = await _db.BeginAsync(caller.TenantId, context.CancellationToken);
        // Its queued and past deliveries go with it (ON DELETE CASCADE).
        var deleted = await scope.Connection.ExecuteAsync("DELETE FROM webhook_endpoints WHERE tenant_id = @tenant AND endpoint_id = @id",
            new { tenant = caller.TenantId, id }, scope.Transaction);
        if (deleted == 0) throw new NotFoundException($"Webhook endpoint {id} not found.");
        await scope.CommitAsync(context.CancellationToken);
        return new DeleteWebhookEndpointResponse();
    }

    public override async Task<WebhookEndpointWithSecret> RotateWebhookSecret(RotateWebhookSecretRequest request, ServerCallContext context)
    {
        var caller = context.Caller(Scope.DeliveryAdmin);
        var id = EndpointId(request.EndpointId, "endpoint_id");
        var period = request.PreviousSecretValidSeconds == 0 ? DefaultRotationPeriod : TimeSpan.FromSeconds(request.PreviousSecretValidSeconds);
        if (period <= TimeSpan.Zero || period > MaxRotationPeriod)
            throw new InvalidArgumentException("previous_secret_valid_seconds", "must be between 1 second and 7 days (0: 24 hours)");
        var secret = WebhookSignature.NewSecret();
        var now = _clock.GetUtcNow().UtcDateTime;
        await using var scope = await _db.BeginAsync(caller.TenantId, context.CancellationToken);
        // The current secret becomes the previous one (a previous one still signing is dropped: two at most).
        var row = await scope.Connection.QuerySingleOrDefaultAsync<EndpointRow>($"""
            UPDATE webhook_endpoints SET previous_secret = secret, previous_secret_expires_at = @until, secret = @sealed, updated_at = @now
            WHERE tenant_id = @tenant AND endpoint_id = @id
            RETURNING {EndpointRow.Columns}
            """, new
        {
            tenant = caller.TenantId, id, until = now + period, now,
            @sealed = _secrets.Seal(secret, WebhookSecrets.AssociatedData(caller.TenantId, id)),
        }, scope.Transaction) ?? throw new NotFoundException($"Webhook endpoint {id} not found.");
        await scope.CommitAsync(context.CancellationToken);
        return new WebhookEndpointWithSecret { Endpoint = ToProto(row), Secret = secret };
    }

    public override async Task<ListWebhookDeliveriesResponse> ListWebhookDeliveries(ListWebhookDeliveriesRequest request, ServerCallContext context)
    {
        var caller = context.Caller(Scope.DeliveryRead);
        var id = EndpointId(request.EndpointId, "endpoint_id");
        var pageSize = PageToken.Size(request.PageSize);
        DateTime? beforeAt = null;
        string? beforeId = null;
        if (PageToken.Decode(request.PageToken) is { } token)
        {
            var parts = token.Split('|');
            if (parts.Length != 2 || !long.TryParse(parts[0], out var ticks))
                throw new InvalidArgumentException("page_token", "is not a token returned by a previous call");
            beforeAt = new DateTime(ticks, DateTimeKind.Utc);
            beforeId = parts[1];
        }
        await using var scope = await _db.BeginAsync(caller.TenantId, context.CancellationToken);
        await LoadEndpointAsync(scope, id);
        var rows = (await scope.Connection.QueryAsync<DeliveryRow>("""
            SELECT delivery_id, endpoint_id, event_type, status, attempts, last_status_code, last_error, created_at, last_attempt_at,
                   next_attempt_at, delivered_at, payload
            FROM webhook_deliveries
            WHERE tenant_id = @tenant AND endpoint_id = @id
              AND (@beforeAt::timestamptz IS NULL OR (created_at, delivery_id) < (@beforeAt, @beforeId))
            ORDER BY created_at DESC, delivery_id DESC
            LIMIT @limit
            """, new { tenant = caller.TenantId, id, beforeAt, beforeId, limit = pageSize + 1 }, scope.Transaction)).AsList();
        var response = new ListWebhookDeliveriesResponse();
        response.Deliveries.AddRange(rows.Take(pageSize).Select(ToProto));
        if (rows.Count > pageSize)
        {
            var last = rows[pageSize - 1];
            response.NextPageToken = PageToken.Encode($"{last.CreatedAt.Ticks}|{last.DeliveryId}");
        }
        return response;
    }

    private static Guid EndpointId(string value, string field) =>
        Guid.TryParse(value, out var id) ? id : throw new InvalidArgumentException(field, "is not a UUID");

    private static async Task<EndpointRow> LoadEndpointAsync(TenantTransaction scope, Guid id) =>
        await scope.Connection.QuerySingleOrDefaultAsync<EndpointRow>(
            $"SELECT {EndpointRow.Columns} FROM webhook_endpoints WHERE tenant_id = @tenant AND endpoint_id = @id",
            new { tenant = scope.Tenant, id }, scope.Transaction)
        ?? throw new NotFoundException($"Webhook endpoint {id} not found.");

    /// <summary>
    /// The fields being set: an https URL (http only where private addresses are allowed, for loopback receivers)
    /// whose host resolves to addresses the outbound guard allows, known event types, a bounded description.
    /// The guard judges the address again on every connection (a name may resolve elsewhere later).
    /// </summary>
    private async Task ValidateEndpointAsync(WebhookEndpoint e, IReadOnlyCollection<string> paths, CancellationToken ct)
    {
        var v = new Validation();
        Uri? url = null;
        if (paths.Contains("url"))
        {
            if (e.Url.Length is 0 or > 2048 || !Uri.TryCreate(e.Url, UriKind.Absolute, out url)) v.Add("endpoint.url", "is required: an absolute https URL of at most 2048 characters");
            else if (!(url.Scheme == Uri.UriSchemeHttps || (url.Scheme == Uri.UriSchemeHttp && _guard.AllowsPrivateAddresses)))
                v.Add("endpoint.url", "must be an https URL");
            else if (url.UserInfo.Length > 0) v.Add("endpoint.url", "must not carry credentials");
            else if (_guard.LiteralRefusal(url.Host) is { } why) v.Add("endpoint.url", $"is refused: {why}");
        }
        if (paths.Contains("event_types"))
        {
            if (e.EventTypes.Count == 0) v.Add("endpoint.event_types", $"name at least one of {string.Join(", ", WebhookEvents.All)}");
            for (var i = 0; i < e.EventTypes.Count; i++)
                if (!WebhookEvents.All.Contains(e.EventTypes[i])) v.Add($"endpoint.event_types[{i}]", $"'{e.EventTypes[i]}' is not one of {string.Join(", ", WebhookEvents.All)}");
        }
        if (paths.Contains("description") && e.Description.Length > 500) v.Add("endpoint.description", "must be at most 500 characters");
        v.ThrowIfInvalid();
        if (url is null) return;
        try
        {
            await _guard.ResolveAsync(url.IdnHost, ct);
        }
        catch (OutboundAddressRefusedException ex)
        {
            throw new InvalidArgumentException("endpoint.url", $"is refused: {ex.Message}");
        }
        catch (SocketException)
        {
            throw new InvalidArgumentException("endpoint.url", $"{url.Host} does not resolve");
        }
    }

    private static WebhookEndpoint ToProto(EndpointRow r)
    {
        var e = new WebhookEndpoint
        {
            EndpointId = r.EndpointId.ToString(), Url = r.Url, Description = r.Description, Enabled = r.Enabled, DisabledReason = r.DisabledReason,
            CreatedAt = Timestamp.FromDateTime(r.CreatedAt), UpdatedAt = Timestamp.FromDateTime(r.UpdatedAt),
        };
        e.EventTypes.AddRange(r.EventTypes);
        if (r.DisabledAt is { } disabled) e.DisabledAt = Timestamp.FromDateTime(disabled);
        if (r.PreviousSecretExpiresAt is { } until) e.PreviousSecretExpiresAt = Timestamp.FromDateTime(until);
        return e;
    }

    private static WebhookDelivery ToProto(DeliveryRow r)
    {
        var d = new WebhookDelivery
        {
            DeliveryId = r.DeliveryId, EndpointId = r.EndpointId.ToString(), EventType = r.EventType, Attempts = r.Attempts,
            Status = r.Status switch
            {
                "pending" => WebhookDeliveryStatus.Pending,
                "delivered" => WebhookDeliveryStatus.Delivered,
                "failed" => WebhookDeliveryStatus.Failed,
                _ => WebhookDeliveryStatus.Unspecified,
            },
            LastStatusCode = r.LastStatusCode ?? 0, LastError = r.LastError, CreatedAt = Timestamp.FromDateTime(r.CreatedAt), Payload = r.Payload,
        };
        if (r.LastAttemptAt is { } attempted) d.LastAttemptAt = Timestamp.FromDateTime(attempted);
        if (r.Status == "pending") d.NextAttemptAt = Timestamp.FromDateTime(r.NextAttemptAt);
        if (r.DeliveredAt is { } delivered) d.DeliveredAt = Timestamp.FromDateTime(delivered);
        return d;
    }
}
