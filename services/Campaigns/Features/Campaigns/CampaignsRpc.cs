using Crm.BuildingBlocks.Tenancy;
using Crm.Campaigns.V1;
using Grpc.Core;

namespace Crm.Campaigns.Features;

// Campaigns: the calls, mapped onto Campaigns.CampaignEngine. Reads need campaigns.read, changes campaigns.write.
public sealed partial class CampaignsGrpcService
{
    public override Task<Campaign> CreateCampaign(CreateCampaignRequest request, ServerCallContext context) =>
        _campaigns.CreateAsync(context.Caller(Scope.CampaignsWrite).TenantId, request.Campaign ?? new Campaign(), context.CancellationToken);

    public override Task<Campaign> UpdateCampaign(UpdateCampaignRequest request, ServerCallContext context) =>
        _campaigns.UpdateAsync(context.Caller(Scope.CampaignsWrite).TenantId, request.Campaign ?? new Campaign(),
            request.UpdateMask?.Paths ?? (IReadOnlyList<string>)[], context.CancellationToken);

    public override Task<Campaign> GetCampaign(GetCampaignRequest request, ServerCallContext context) =>
        _campaigns.GetAsync(context.Caller(Scope.CampaignsRead).TenantId, request.CampaignId, context.CancellationToken);

    public override Task<ListCampaignsResponse> ListCampaigns(ListCampaignsRequest request, ServerCallContext context) =>
        _campaigns.ListAsync(context.Caller(Scope.CampaignsRead).TenantId, request, context.CancellationToken);

    public override async Task<DeleteCampaignResponse> DeleteCampaign(DeleteCampaignRequest request, ServerCallContext context)
    {
        await _campaigns.DeleteAsync(context.Caller(Scope.CampaignsWrite).TenantId, request.CampaignId, context.CancellationToken);
        return new DeleteCampaignResponse();
    }
}
