namespace Crm.Campaigns.Features.Fanout;

/// <summary>Claims the next page after a run's durable cursor, renders, writes DeliverMessage batches to the outbox and advances the cursor in one transaction. Owner: campaigns-core.</summary>
public sealed class FanoutWorker
{
}

public static class FanoutRegistration
{
    public static IServiceCollection AddFanout(this IServiceCollection services)
    {
        services.AddSingleton<FanoutWorker>();
        return services;
    }
}
