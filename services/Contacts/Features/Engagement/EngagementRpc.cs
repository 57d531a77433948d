using Crm.BuildingBlocks.Errors;
using Crm.BuildingBlocks.Outbox;
using Crm.BuildingBlocks.Tenancy;
using Crm.Contacts.Features.Contacts;
using Crm.Contracts.Contacts;
using Crm.Contacts.V1;
using Dapper;
using Google.Protobuf;
using Grpc.Core;

namespace Crm.Contacts.Features;

public sealed partial class ContactsGrpcService
{
    private const int MaxEventsPerCall = 5000;

    public override async Task<RecordEngagementResponse> RecordEngagement(RecordEngagementRequest request, ServerCallContext context)
    {
        var caller = context.Caller(Scope.ContactsWrite);
        var ct = context.CancellationToken;
        var tenant = caller.TenantId;
        var v = new Validation();
        if (request.Events.Count == 0) v.Add("events", "at least one event is required");
        if (request.Events.Count > MaxEventsPerCall) v.Add("events", $"at most {MaxEventsPerCall} events a call");
        for (var i = 0; i < request.Events.Count; i++)
        {
            var e = request.Events[i];
            if (!ContactFields.IsValidKey(e.EventId, 256)) v.Add($"events[{i}].event_id", "is required (1 to 256 characters)");
            if (e.Type == EngagementType.Unspecified) v.Add($"events[{i}].type", "is required");
            if (e.Type == EngagementType.Custom && !ContactFields.IsValidKey(e.Name)) v.Add($"events[{i}].name", "is required for custom events");
            if (e.OccurredAt is null) v.Add($"events[{i}].occurred_at", "is required");
        }
        v.ThrowIfInvalid();

        await using var scope = await _db.BeginAsync(tenant, ct);
        var (conn, tx) = scope;
        var contactIds = new Guid[request.Events.Count];
        for (var i = 0; i < request.Events.Count; i++)
            contactIds[i] = await ResolveAsync(conn, tx, tenant, request.Events[i].Contact, $"events[{i}].contact");

        var events = request.Events;
        var properties = events.Select(e => e.Properties is null ? "{}" : JsonFormatter.Default.Format(e.Properties)).ToArray();
        var inserted = (await conn.QueryAsync<string>("""
            INSERT INTO engagement_events (tenant_id, event_id, contact_id, type, name, channel, message_id, campaign_id, occurred_at, properties)
            SELECT @tenant, e.event_id, e.contact_id, e.type, e.name, e.channel, e.message_id, e.campaign_id, e.occurred_at, e.properties::jsonb
            FROM unnest(@eventIds, @contactIds, @types, @names, @channels, @messageIds, @campaignIds, @occurredAts, @properties)
                 AS e(event_id, contact_id, type, name, channel, message_id, campaign_id, occurred_at, properties)
            ON CONFLICT (tenant_id, event_id) DO NOTHING
            RETURNING event_id
            """, new
        {
            tenant,
            eventIds = events.Select(e => e.EventId).ToArray(),
            contactIds,
            types = events.Select(e => Words.Of(e.Type)).ToArray(),
            names = events.Select(e => NullIfEmpty(e.Name)).ToArray(),
            channels = events.Select(e => e.Channel == Channel.Unspecified ? null : Words.Of(e.Channel)).ToArray(),
            messageIds = events.Select(e => NullIfEmpty(e.MessageId)).ToArray(),
            campaignIds = events.Select(e => NullIfEmpty(e.CampaignId)).ToArray(),
            occurredAts = events.Select(e => e.OccurredAt.ToDateTime()).ToArray(),
            properties,
        }, tx)).ToHashSet(StringComparer.Ordinal);

        if (inserted.Count > 0)
        {
            await Outbox.EnqueueAsync(conn, tx, new EngagementRecorded(tenant, events
                .Select((e, i) => (e, i))
                .Where(x => inserted.Contains(x.e.EventId))
                .Select(x => new RecordedEngagement(x.e.EventId, contactIds[x.i], Words.Of(x.e.Type), NullIfEmpty(x.e.Name),
                    x.e.Channel == Channel.Unspecified ? null : Words.Of(x.e.Channel), NullIfEmpty(x.e.MessageId),
                    NullIfEmpty(x.e.CampaignId), new DateTimeOffset(x.e.OccurredAt.ToDateTime(), TimeSpan.Zero), properties[x.i]))
                .ToArray()));
        }
        await tx.CommitAsync(ct);
        return new RecordEngagementResponse { Recorded = inserted.Count, Duplicates = events.Count - inserted.Count };
    }
}
