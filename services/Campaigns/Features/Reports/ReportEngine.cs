namespace Crm.Campaigns.Features.Reports;

/// <summary>GetCampaignReport (lift with a 95% CI) and the CSV export. Owner: campaigns-experiments.</summary>
public sealed class ReportEngine
{
}

public static class ReportsRegistration
{
    public static IServiceCollection AddReports(this IServiceCollection services)
    {
        services.AddSingleton<ReportEngine>();
        return services;
    }
}
