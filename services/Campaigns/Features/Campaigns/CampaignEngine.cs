namespace Crm.Campaigns.Features.Campaigns;

/// <summary>Campaign CRUD with validation. Owner: campaigns-core.</summary>
public sealed class CampaignEngine
{
}

public static class CampaignsRegistration
{
    public static IServiceCollection AddCampaignDefinitions(this IServiceCollection services)
    {
        services.AddSingleton<CampaignEngine>();
        return services;
    }
}
