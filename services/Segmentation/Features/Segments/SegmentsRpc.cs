using Crm.BuildingBlocks.Tenancy;
using Crm.Segmentation.V1;
using Grpc.Core;

namespace Crm.Segmentation.Features;

// Segments: the calls, mapped onto Segments.SegmentEngine. Reads need segments.read, changes segments.write;
// the tenant is always the caller's.
public sealed partial class SegmentationGrpcService
{
    public override Task<Segment> CreateSegment(CreateSegmentRequest request, ServerCallContext context) =>
        _segments.CreateAsync(context.Caller(Scope.SegmentsWrite).TenantId, request.Segment ?? new Segment(), context.CancellationToken);

    public override Task<Segment> UpdateSegment(UpdateSegmentRequest request, ServerCallContext context) =>
        _segments.UpdateAsync(context.Caller(Scope.SegmentsWrite).TenantId, request.Segment ?? new Segment(), context.CancellationToken);

    public override Task<Segment> GetSegment(GetSegmentRequest request, ServerCallContext context) =>
        _segments.GetAsync(context.Caller(Scope.SegmentsRead).TenantId, request.SegmentId, context.CancellationToken);

    public override Task<ListSegmentsResponse> ListSegments(ListSegmentsRequest request, ServerCallContext context) =>
        _segments.ListAsync(context.Caller(Scope.SegmentsRead).TenantId, request, context.CancellationToken);

    public override async Task<DeleteSegmentResponse> DeleteSegment(DeleteSegmentRequest request, ServerCallContext context)
    {
        await _segments.DeleteAsync(context.Caller(Scope.SegmentsWrite).TenantId, request.SegmentId, context.CancellationToken);
        return new DeleteSegmentResponse();
    }

    public override Task<PreviewSegmentResponse> PreviewSegment(PreviewSegmentRequest request, ServerCallContext context) =>
        _segments.PreviewAsync(context.Caller(Scope.SegmentsRead).TenantId, request, context.CancellationToken);

    public override Task ExportSegmentMembers(ExportSegmentMembersRequest request, IServerStreamWriter<ExportSegmentMembersResponse> responseStream,
        ServerCallContext context) =>
        _segments.ExportAsync(context.Caller(Scope.SegmentsRead).TenantId, request, page => responseStream.WriteAsync(page, context.CancellationToken),
            context.CancellationToken);

    public override Task<ListContactSegmentsResponse> ListContactSegments(ListContactSegmentsRequest request, ServerCallContext context) =>
        _segments.ListContactSegmentsAsync(context.Caller(Scope.SegmentsRead).TenantId, request.ContactId, context.CancellationToken);
}
