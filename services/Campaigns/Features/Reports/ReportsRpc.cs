using Crm.BuildingBlocks.Errors;
using Crm.BuildingBlocks.Tenancy;
using Crm.Campaigns.Features.Experiments;
using Crm.Campaigns.Features.Reports;
using Crm.Campaigns.V1;
using Grpc.Core;

namespace Crm.Campaigns.Features;

public sealed partial class CampaignsGrpcService
{
    public override async Task<CampaignReport> GetCampaignReport(GetCampaignReportRequest request, ServerCallContext context)
    {
        var caller = context.Caller(Scope.CampaignsRead);
        var (campaignId, runId) = ReportTarget(request.CampaignId, request.RunId);
        var report = await _reports.GetAsync(caller.TenantId, campaignId, runId, context.CancellationToken);
        var answer = new CampaignReport
        {
            CampaignId = campaignId.ToString(),
            RunId = runId?.ToString() ?? "",
            Currency = report.Currency,
            ConversionGoal = new ConversionGoal { Kind = report.ConversionKind ?? "", EventName = report.ConversionEvent ?? "", WindowDays = report.WindowDays },
            Attribution = ConversionAttribution.Description,
        };
        answer.Variants.AddRange(report.Groups.Select(x => new VariantReport
        {
            VariantId = x.Group.VariantId,
            Name = x.Group.Name,
            Holdout = x.Group.Holdout,
            Recipients = x.Group.Recipients,
            Sent = x.Group.Sent,
            Delivered = x.Group.Delivered,
            Opened = x.Group.Opened,
            MachineOpened = x.Group.MachineOpened,
            Clicked = x.Group.Clicked,
            Converted = x.Group.Converted,
            ConversionRate = x.Group.ConversionRate,
            Revenue = x.Group.Revenue.ToString(System.Globalization.CultureInfo.InvariantCulture),
            RevenuePerRecipient = x.Group.RevenuePerRecipient.ToString(System.Globalization.CultureInfo.InvariantCulture),
            Lift = x.Lift is { } l
                ? new Lift { Absolute = l.Absolute, Relative = l.Relative, CiLow = l.CiLow, CiHigh = l.CiHigh, PValue = l.PValue, Significant = l.Significant }
                : null,
        }));
        return answer;
    }

    public override async Task ExportCampaignReport(ExportCampaignReportRequest request, IServerStreamWriter<ExportCampaignReportResponse> responseStream,
        ServerCallContext context)
    {
        var caller = context.Caller(Scope.CampaignsRead);
        var (campaignId, runId) = ReportTarget(request.CampaignId, request.RunId);
        var report = await _reports.GetAsync(caller.TenantId, campaignId, runId, context.CancellationToken);
        foreach (var chunk in ReportCsv.Chunks(report))
            await responseStream.WriteAsync(new ExportCampaignReportResponse { Csv = chunk }, context.CancellationToken);
    }

    private static (Guid CampaignId, Guid? RunId) ReportTarget(string campaignId, string runId)
    {
        var v = new Validation();
        if (!Guid.TryParse(campaignId, out var campaign)) v.Add("campaign_id", "must be a campaign id (a UUID)");
        Guid? run = null;
        if (runId.Length > 0)
        {
            if (Guid.TryParse(runId, out var r)) run = r;
            else v.Add("run_id", "must be a run id (a UUID) or empty for every run");
        }
        v.ThrowIfInvalid();
        return (campaign, run);
    }
}
