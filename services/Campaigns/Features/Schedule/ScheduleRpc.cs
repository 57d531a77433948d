using Crm.BuildingBlocks.Errors;
using Crm.BuildingBlocks.Tenancy;
using Crm.Campaigns.V1;
using Grpc.Core;

namespace Crm.Campaigns.Features;

public sealed partial class CampaignsGrpcService
{
    public override async Task<Campaign> ScheduleCampaign(ScheduleCampaignRequest request, ServerCallContext context)
    {
        var caller = context.Caller(Scope.CampaignsSend);
        if (!Guid.TryParse(request.CampaignId, out var campaignId)) throw new InvalidArgumentException("campaign_id", "must be a campaign id (a UUID)");
        await _schedules.ScheduleAsync(caller.TenantId, campaignId, request.Schedule, context.CancellationToken);
        return await _schedules.GetAsync(caller.TenantId, campaignId, context.CancellationToken);
    }
}
