using Crm.BuildingBlocks.Errors;
using Crm.BuildingBlocks.Tenancy;
using Crm.Segmentation.Features.Backfill;
using Crm.Segmentation.V1;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;

namespace Crm.Segmentation.Features;

public sealed partial class SegmentationGrpcService
{
    /// <summary>
    /// Starts (or resumes, or joins) a rebuild of the caller's projections from Contacts' exports. Needs
    /// segments.write, and contacts.read too: the caller's token is what Segmentation shows Contacts.
    /// </summary>
    public override async Task<Rebuild> RebuildProjections(RebuildProjectionsRequest request, ServerCallContext context)
    {
        var caller = context.Caller(Scope.SegmentsWrite);
        var rebuild = await _rebuilds.StartAsync(caller, context.RequestHeaders.GetValue("authorization"), context.CancellationToken);
        return ToProto(rebuild);
    }

    public override async Task<Rebuild> GetRebuild(GetRebuildRequest request, ServerCallContext context)
    {
        var caller = context.Caller(Scope.SegmentsRead);
        if (!Guid.TryParse(request.RebuildId, out var id)) throw new InvalidArgumentException("rebuild_id", "is not a rebuild id (a UUID)");
        return ToProto(await _rebuilds.GetAsync(caller.TenantId, id, context.CancellationToken));
    }

    private static Rebuild ToProto(RebuildRow r) => new()
    {
        RebuildId = r.RebuildId.ToString(),
        Status = r.Status switch
        {
            "running" => RebuildStatus.Running,
            "succeeded" => RebuildStatus.Succeeded,
            "failed" => RebuildStatus.Failed,
            _ => RebuildStatus.Unspecified,
        },
        Contacts = r.Contacts,
        Consents = r.Consents,
        Orders = r.Orders,
        EngagementEvents = r.EngagementEvents,
        StartedAt = Timestamp.FromDateTime(DateTime.SpecifyKind(r.StartedAt, DateTimeKind.Utc)),
        FinishedAt = r.FinishedAt is { } f ? Timestamp.FromDateTime(DateTime.SpecifyKind(f, DateTimeKind.Utc)) : null,
        Failure = r.Failure ?? "",
    };
}
