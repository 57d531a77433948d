using Crm.BuildingBlocks.Errors;
using Crm.BuildingBlocks.Tenancy;
using Crm.Delivery.Features.Messages;
using Crm.Delivery.V1;
using Dapper;
using Grpc.Core;

namespace Crm.Delivery.Features;

public sealed partial class DeliveryGrpcService
{
    /// <summary>
    /// Withdraws messages still waiting (accepted or deferred, and not claimed by a worker): suppressed
    /// with the reason, a step on each timeline, MessagesSuppressed in the outbox. A message a worker
    /// holds is left alone: it may be at the provider already.
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
        // Claimed like any batch (so no worker takes them meanwhile), then suppressed through the
        // pipeline's own outcome write: status and reason, a timeline step, MessagesSuppressed.
        List<MessageRow> cancelled;
        await using (var scope = await _db.BeginAsync(tenant, ct))
        {
            // The tombstone: commands of the campaign that arrive from now on are suppressed (DeliverMessageConsumer).
            if (request.CampaignId.Length > 0)
                await scope.Connection.ExecuteAsync("""
                    INSERT INTO cancelled_campaigns (tenant_id, campaign_id, reason, cancelled_at) VALUES (@tenant, @campaignId, @reason, @now)
                    ON CONFLICT (tenant_id, campaign_id) DO NOTHING
                    """, new { tenant, campaignId = request.CampaignId, reason, now = now.UtcDateTime }, scope.Transaction);
            cancelled = (await scope.Connection.QueryAsync<MessageRow>($"""
                UPDATE messages SET claimed_until = @until
                WHERE (tenant_id, message_id) IN (
                    SELECT tenant_id, message_id FROM messages
                    WHERE tenant_id = @tenant AND status IN ('accepted', 'deferred')
                      AND (claimed_until IS NULL OR claimed_until < @now)
                      AND (message_id = ANY(@ids) OR (@campaignId <> '' AND campaign_id = @campaignId))
                    LIMIT @limit
                    FOR UPDATE SKIP LOCKED)
                RETURNING {MessageRow.Columns}
                """, new
            {
                tenant, now = now.UtcDateTime, until = (now + _pipeline.Lease).UtcDateTime,
                ids = ids.ToArray(), campaignId = request.CampaignId, limit = MaxCancelled,
            })).AsList();
            await scope.CommitAsync(ct);
        }
        var outcomes = new Pipeline.Outcomes(tenant, _clock, _channels);
        foreach (var m in cancelled) outcomes.Suppress(m, reason, null);
        await outcomes.WriteAsync(_db, ct);
        // A full page may have left more behind (an exact 10,000 costs the caller one empty call).
        var more = cancelled.Count == MaxCancelled;
        var done = cancelled.Select(c => c.MessageId).ToHashSet();
        var response = new CancelMessagesResponse { More = more };
        response.Cancelled.AddRange(done.Select(id => id.ToString()));
        response.NotCancelled.AddRange(ids.Where(id => !done.Contains(id)).Distinct().Select(id => id.ToString()));
        return response;
    }
}
