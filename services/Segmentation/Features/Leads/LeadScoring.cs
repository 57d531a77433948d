namespace Crm.Segmentation.Features.Leads;

// Placeholder: this capability is being built in Features/Leads.
public sealed class LeadScoring;

public static class LeadsRegistration
{
    public static IServiceCollection AddLeadScoring(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddSingleton<LeadScoring>();
        return services;
    }
}
