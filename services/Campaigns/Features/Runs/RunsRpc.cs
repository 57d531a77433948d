using Crm.BuildingBlocks.Tenancy;
using Crm.Campaigns.V1;
using Grpc.Core;

namespace Crm.Campaigns.Features;

// Runs: start, pause, resume and cancel need campaigns.send; runs and progress campaigns.read.
public sealed partial class CampaignsGrpcService
{
    public override Task<CampaignRun> StartCampaign(StartCampaignRequest request, ServerCallContext context) =>
        _runs.StartAsync(context.Caller(Scope.CampaignsSend).TenantId, request.CampaignId, context.CancellationToken);

    public override Task<Campaign> PauseCampaign(PauseCampaignRequest request, ServerCallContext context) =>
        _runs.PauseAsync(context.Caller(Scope.CampaignsSend).TenantId, request.CampaignId, context.CancellationToken);

    public override Task<Campaign> ResumeCampaign(ResumeCampaignRequest request, ServerCallContext context) =>
        _runs.ResumeAsync(context.Caller(Scope.CampaignsSend).TenantId, request.CampaignId, context.CancellationToken);

    public override Task<Campaign> CancelCampaign(CancelCampaignRequest request, ServerCallContext context) =>
        _runs.CancelAsync(context.Caller(Scope.CampaignsSend).TenantId, request.CampaignId, request.Reason, context.CancellationToken);

    public override Task<ListCampaignRunsResponse> ListCampaignRuns(ListCampaignRunsRequest request, ServerCallContext context) =>
        _runs.ListAsync(context.Caller(Scope.CampaignsRead).TenantId, request, context.CancellationToken);

    public override Task<CampaignRun> GetCampaignRun(GetCampaignRunRequest request, ServerCallContext context) =>
        _runs.GetAsync(context.Caller(Scope.CampaignsRead).TenantId, request, context.CancellationToken);
}
