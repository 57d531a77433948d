using MassTransit;

namespace Crm.BuildingBlocks.Messaging;

/// <summary>
/// Retries for a projection consumer: a write that hits a transient database error (or a deadlock between two
/// batches touching the same rows) is tried again with back-off before the message goes to the error queue.
/// </summary>
public sealed class ProjectionConsumerDefinition<T> : ConsumerDefinition<T> where T : class, IConsumer
{
    protected override void ConfigureConsumer(IReceiveEndpointConfigurator endpointConfigurator, IConsumerConfigurator<T> consumerConfigurator,
        IRegistrationContext context) =>
        endpointConfigurator.UseMessageRetry(r => r.Exponential(5, TimeSpan.FromMilliseconds(100), TimeSpan.FromSeconds(5), TimeSpan.FromMilliseconds(200)));
}
