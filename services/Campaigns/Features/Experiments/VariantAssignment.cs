using MassTransit;

namespace Crm.Campaigns.Features.Experiments;

/// <summary>A/B(n) variants by weight and the holdout, assigned at snapshot by hashing (run seed, contact id); conversion attribution. Owner: campaigns-experiments.</summary>
public sealed class VariantAssignment
{
}

public static class ExperimentsRegistration
{
    public static IServiceCollection AddExperiments(this IServiceCollection services)
    {
        services.AddSingleton<VariantAssignment>();
        return services;
    }
}

public static class ExperimentsConsumers
{
    /// <summary>Conversion attribution's consumers (orders, named events) go here.</summary>
    public static void AddExperimentsConsumers(this IBusRegistrationConfigurator bus)
    {
    }
}
