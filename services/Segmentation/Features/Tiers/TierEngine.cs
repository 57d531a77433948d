namespace Crm.Segmentation.Features.Tiers;

// Placeholder: this capability is being built in Features/Tiers.
public sealed class TierEngine;

public static class TiersRegistration
{
    public static IServiceCollection AddTiers(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddSingleton<TierEngine>();
        return services;
    }
}
