namespace Crm.Campaigns.Features.Settings;

/// <summary>The workspace's campaign defaults (locale, time zone). Owner: campaigns-core.</summary>
public sealed class CampaignSettingsStore
{
}

public static class SettingsRegistration
{
    public static IServiceCollection AddCampaignSettings(this IServiceCollection services)
    {
        services.AddSingleton<CampaignSettingsStore>();
        return services;
    }
}
