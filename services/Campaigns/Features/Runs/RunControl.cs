namespace Crm.Campaigns.Features.Runs;

/// <summary>Start, pause, resume and cancel; runs and their progress. Owner: campaigns-core.</summary>
public sealed class RunControl
{
}

public static class RunsRegistration
{
    public static IServiceCollection AddRuns(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddSingleton<RunControl>();
        return services;
    }
}
