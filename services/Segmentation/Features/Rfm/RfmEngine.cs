namespace Crm.Segmentation.Features.Rfm;

// Placeholder: this capability is being built in Features/Rfm.
public sealed class RfmEngine;

public static class RfmRegistration
{
    public static IServiceCollection AddRfm(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddSingleton<RfmEngine>();
        return services;
    }
}
