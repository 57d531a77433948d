using Crm.BuildingBlocks.Errors;
using Crm.BuildingBlocks.Tenancy;
using Crm.Segmentation.Features.Leads;
using Crm.Segmentation.V1;
using Grpc.Core;

namespace Crm.Segmentation.Features;

public sealed partial class SegmentationGrpcService
{
    public override async Task<LeadScoringRules> GetLeadScoringRules(GetLeadScoringRulesRequest request, ServerCallContext context)
    {
        var caller = context.Caller(Scope.SegmentsRead);
        await using var scope = await _db.BeginAsync(caller.TenantId, context.CancellationToken);
        return await _leads.GetRulesAsync(scope, context.CancellationToken);
    }

    /// <summary>Replaces the tenant's rules, threshold and half-life; every contact is rescored within seconds.</summary>
    public override async Task<LeadScoringRules> SetLeadScoringRules(SetLeadScoringRulesRequest request, ServerCallContext context)
    {
        var caller = context.Caller(Scope.SegmentsWrite);
        LeadRules.Validate(request.Rules);
        var ct = context.CancellationToken;
        await using var scope = await _db.BeginAsync(caller.TenantId, ct);
        var saved = await _leads.SetRulesAsync(scope, request.Rules, ct);
        await scope.CommitAsync(ct);
        return saved;
    }

    public override async Task<LeadScore> GetLeadScore(GetLeadScoreRequest request, ServerCallContext context)
    {
        var caller = context.Caller(Scope.SegmentsRead);
        if (!Guid.TryParse(request.ContactId, out var contact)) throw new InvalidArgumentException("contact_id", "must be a contact's UUID");
        await using var scope = await _db.BeginAsync(caller.TenantId, context.CancellationToken);
        return await _leads.ExplainAsync(scope, contact, context.CancellationToken)
            ?? throw new NotFoundException($"Contact {contact} is not known to Segmentation.");
    }
}
