namespace Crm.Campaigns.Features.Estimate;

/// <summary>EstimateCampaign: audience, reach per channel, caps and window, SMS segments and cost. Owner: campaigns-experiments.</summary>
public sealed class EstimateEngine
{
}

public static class EstimateRegistration
{
    public static IServiceCollection AddEstimate(this IServiceCollection services)
    {
        services.AddSingleton<EstimateEngine>();
        return services;
    }
}
