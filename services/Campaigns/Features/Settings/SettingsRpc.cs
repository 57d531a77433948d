using Crm.BuildingBlocks.Tenancy;
using Crm.Campaigns.V1;
using Grpc.Core;

namespace Crm.Campaigns.Features;

// Settings: read with campaigns.read, changed with campaigns.write.
public sealed partial class CampaignsGrpcService
{
    public override Task<CampaignSettings> GetCampaignSettings(GetCampaignSettingsRequest request, ServerCallContext context) =>
        _settings.GetAsync(context.Caller(Scope.CampaignsRead).TenantId, context.CancellationToken);

    public override Task<CampaignSettings> UpdateCampaignSettings(UpdateCampaignSettingsRequest request, ServerCallContext context) =>
        _settings.UpdateAsync(context.Caller(Scope.CampaignsWrite).TenantId, request.Settings ?? new CampaignSettings(), context.CancellationToken);
}
