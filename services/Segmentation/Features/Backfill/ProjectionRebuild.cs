namespace Crm.Segmentation.Features.Backfill;

// Placeholder: this capability is being built in Features/Backfill.
public sealed class ProjectionRebuild;

public static class BackfillRegistration
{
    public static IServiceCollection AddBackfill(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddSingleton<ProjectionRebuild>();
        return services;
    }
}
