using Crm.BuildingBlocks.Errors;
using Crm.BuildingBlocks.Outbox;
using Crm.BuildingBlocks.Tenancy;
using Crm.Contracts.Delivery;
using Crm.Delivery.V1;
using Dapper;
using Grpc.Core;

namespace Crm.Delivery.Features;

public sealed partial class DeliveryGrpcService
{
    /// <summary>
    /// Withdraws messages still waiting (accepted or deferred, and not claimed by a worker), in one
    /// transaction: suppressed with the reason, a step on each timeline, MessagesSuppressed in the
    /// outbox. A message a worker holds is left alone: it may be at the provider already.
    /// </summary>
    private const int MaxCancelled = 10_000;

    public override async Task<CancelMessagesResponse> CancelMessages(CancelMessagesRequest request, ServerCallContext context)
    {
        var caller = context.Caller(Scope.DeliverySend);
        var v = new Validation();
        var ids = new List<Guid>();
        for (var i = 0; i < request.MessageIds.Count; i++)
        {
            if (Guid.TryParse(request.MessageIds[i], out var id)) ids.Add(id);
            else v.Add($"message_ids[{i}]", "is not a UUID");
        }
        if (request.MessageIds.Count > MaxBatch) v.Add("message_ids", $"cancel at most {MaxBatch} messages by id a call");
        if (ids.Count == 0 && request.MessageIds.Count == 0 && request.CampaignId.Length == 0) v.Add("message_ids", "name messages or a campaign");
        if (request.Reason.Trim().Length is 0 or > 500) v.Add("reason", "is required (1 to 500 characters): it is recorded on each message");
        v.ThrowIfInvalid();

        var tenant = caller.TenantId;
        var now = _clock.GetUtcNow();
        var reason = $"cancelled: {request.Reason.Trim()}";
        var ct = context.CancellationToken;
        await using var conn = await _db.OpenConnectionAsync(ct);
        await using var tx = await conn.BeginTransactionAsync(ct);
        var cancelled = (await conn.QueryAsync<CancelledRow>("""
            UPDATE messages SET status = 'suppressed', reason = @reason, rule_id = NULL, not_before = NULL,
                cap_reserved_at = NULL, claimed_until = NULL, updated_at = @now
            WHERE (tenant_id, message_id) IN (
                SELECT tenant_id, message_id FROM messages
                WHERE tenant_id = @tenant AND status IN ('accepted', 'deferred')
                  AND (claimed_until IS NULL OR claimed_until < @now)
                  AND (message_id = ANY(@ids) OR (@campaignId <> '' AND campaign_id = @campaignId))
                LIMIT @limit
                FOR UPDATE SKIP LOCKED)
            RETURNING message_id, contact_id, channel, campaign_id
            """, new { tenant, reason, now = now.UtcDateTime, ids = ids.ToArray(), campaignId = request.CampaignId, limit = MaxCancelled }, tx)).AsList();
        // A full page may have left more behind (an exact 10,000 costs the caller one empty call).
        var more = cancelled.Count == MaxCancelled;
        if (cancelled.Count > 0)
        {
            await conn.ExecuteAsync("""
                INSERT INTO message_events (tenant_id, message_id, status, reason, at)
                SELECT @tenant, id, 'suppressed', @reason, @now FROM unnest(@ids) AS id
                """, new { tenant, reason, now = now.UtcDateTime, ids = cancelled.Select(c => c.MessageId).ToArray() }, tx);
            await Outbox.EnqueueAsync(conn, tx, new MessagesSuppressed(tenant,
                [.. cancelled.Select(c => new MessageSuppressed(tenant, c.MessageId, c.ContactId, c.Channel, c.CampaignId, reason, null, now))]));
        }
        await tx.CommitAsync(ct);

        var done = cancelled.Select(c => c.MessageId).ToHashSet();
        var response = new CancelMessagesResponse { More = more };
        response.Cancelled.AddRange(done.Select(id => id.ToString()));
        response.NotCancelled.AddRange(ids.Where(id => !done.Contains(id)).Distinct().Select(id => id.ToString()));
        return response;
    }

    private sealed class CancelledRow
    {
        public Guid MessageId { get; init; }
        public Guid ContactId { get; init; }
        public string Channel { get; init; } = "";
        public string? CampaignId { get; init; }
    }
}
