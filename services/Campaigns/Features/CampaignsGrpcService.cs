using Crm.Campaigns.V1;

namespace Crm.Campaigns.Features;

/// <summary>
/// crm.campaigns.v1.CampaignsService. One partial file per capability folder, each mapping its calls onto
/// that folder's engine: Settings/, Templates/, Campaigns/, Runs/ (start, pause, resume, cancel, progress),
/// Estimate/, Schedule/, Reports/. A call no folder maps yet answers UNIMPLEMENTED.
/// </summary>
public sealed partial class CampaignsGrpcService(
    Settings.CampaignSettingsStore settings,
    Templates.TemplateEngine templates,
    Campaigns.CampaignEngine campaigns,
    Runs.RunControl runs,
    Estimate.EstimateEngine estimates,
    Schedule.ScheduleEngine schedules,
    Reports.ReportEngine reports) : CampaignsService.CampaignsServiceBase
{
    private readonly Settings.CampaignSettingsStore _settings = settings;
    private readonly Templates.TemplateEngine _templates = templates;
    private readonly Campaigns.CampaignEngine _campaigns = campaigns;
    private readonly Runs.RunControl _runs = runs;
    private readonly Estimate.EstimateEngine _estimates = estimates;
    private readonly Schedule.ScheduleEngine _schedules = schedules;
    private readonly Reports.ReportEngine _reports = reports;
}
