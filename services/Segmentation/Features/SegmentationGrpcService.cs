using Crm.BuildingBlocks.Data;
using Crm.Segmentation.V1;

namespace Crm.Segmentation.Features;

/// <summary>
/// crm.segmentation.v1.SegmentationService. One partial file per capability folder (Segments/, Rfm/,
/// Leads/, Tiers/, Backfill/), each mapping its calls onto that folder's engine.
/// </summary>
public sealed partial class SegmentationGrpcService(
    TenantDb db,
    TimeProvider time,
    Segments.SegmentEngine segments,
    Rfm.RfmEngine rfm,
    Leads.LeadScoring leads,
    Tiers.TierEngine tiers,
    Backfill.ProjectionRebuild rebuilds) : SegmentationService.SegmentationServiceBase
{
    private readonly TenantDb _db = db;
    private readonly TimeProvider _time = time;
    private readonly Segments.SegmentEngine _segments = segments;
    private readonly Rfm.RfmEngine _rfm = rfm;
    private readonly Leads.LeadScoring _leads = leads;
    private readonly Tiers.TierEngine _tiers = tiers;
    private readonly Backfill.ProjectionRebuild _rebuilds = rebuilds;
}
