using Crm.BuildingBlocks.Tenancy;
using Crm.Segmentation.Features.Tiers;
using Crm.Segmentation.V1;
using Grpc.Core;

namespace Crm.Segmentation.Features;

public sealed partial class SegmentationGrpcService
{
    public override async Task<TierSettings> GetTiers(GetTiersRequest request, ServerCallContext context)
    {
        var caller = context.Caller(Scope.SegmentsRead);
        await using var scope = await _db.BeginAsync(caller.TenantId, context.CancellationToken);
        return await _tiers.GetAsync(scope, context.CancellationToken);
    }

    /// <summary>Replaces the tenant's tiers; every contact is re-evaluated within seconds (TierChanged for those who move).</summary>
    public override async Task<TierSettings> SetTiers(SetTiersRequest request, ServerCallContext context)
    {
        var caller = context.Caller(Scope.SegmentsWrite);
        TierEngine.Validate(request.Settings);
        var ct = context.CancellationToken;
        await using var scope = await _db.BeginAsync(caller.TenantId, ct);
        var saved = await _tiers.SetAsync(scope, request.Settings, ct);
        await scope.CommitAsync(ct);
        return saved;
    }
}
