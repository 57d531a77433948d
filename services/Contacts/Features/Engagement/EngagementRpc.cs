using Crm.BuildingBlocks.Errors;
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
        var recorded = events.Select((e, i) => new RecordedEngagement(e.EventId, contactIds[i], Words.Of(e.Type), NullIfEmpty(e.Name),
            e.Channel == Channel.Unspecified ? null : Words.Of(e.Channel), NullIfEmpty(e.MessageId), NullIfEmpty(e.CampaignId),
            new DateTimeOffset(e.OccurredAt.ToDateTime(), TimeSpan.Zero),
            e.Properties is null ? "{}" : JsonFormatter.Default.Format(e.Properties))).ToArray();
        var inserted = await Engagement.EngagementLog.RecordAsync(conn, tx, tenant, recorded);
        await tx.CommitAsync(ct);
        return new RecordEngagementResponse { Recorded = inserted.Count, Duplicates = events.Count - inserted.Count };
    }
}
