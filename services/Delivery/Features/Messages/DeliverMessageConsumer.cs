using Crm.BuildingBlocks.Errors;
using Crm.Contracts.Delivery;
using Crm.Delivery.Pipeline;
using MassTransit;

namespace Crm.Delivery.Features.Messages;

/// <summary>
/// The pipeline behind a RabbitMQ command: competing consumers on a quorum queue. A command
/// delivered twice accepts nothing new (idempotency keys) and processes nothing twice (claims).
/// </summary>
public sealed class DeliverMessageConsumer(MessageIntake intake, DeliveryPipeline pipeline, ILogger<DeliverMessageConsumer> logger)
    : IConsumer<DeliverMessage>
{
    public async Task Consume(ConsumeContext<DeliverMessage> context)
    {
        var command = context.Message;
        var ct = context.CancellationToken;
        var valid = new List<DeliveryRequest>(command.Messages.Count);
        foreach (var r in command.Messages)
        {
            var v = new Validation();
            MessageIntake.Validate(r, "", v);
            if (v.IsValid) valid.Add(r);
            else logger.LogWarning("DeliverMessage for {Tenant} rejected {Key}: {Problems}", command.TenantId, r.IdempotencyKey,
                string.Join("; ", v.Violations.Select(x => $"{x.Field}: {x.Description}")));
        }
        // A key repeated inside one command is one message.
        valid = valid.DistinctBy(r => r.IdempotencyKey).ToList();
        if (valid.Count == 0) return;
        var (claimed, repeats) = await intake.AcceptManyAsync(command.TenantId, valid, DeliveryPipeline.Lease, ct);
        await pipeline.ProcessClaimedAsync(claimed, ct);
        if (repeats.Count > 0) await pipeline.ProcessAsync(command.TenantId, [.. repeats.Values], ct); // claims only what is still due

    }
}

public sealed class DeliverMessageConsumerDefinition : ConsumerDefinition<DeliverMessageConsumer>
{
    protected override void ConfigureConsumer(IReceiveEndpointConfigurator endpointConfigurator,
        IConsumerConfigurator<DeliverMessageConsumer> consumerConfigurator, IRegistrationContext context)
    {
        // A database or Redis hiccup is retried; the pipeline itself never sends twice.
        endpointConfigurator.UseMessageRetry(r => r.Exponential(5, TimeSpan.FromMilliseconds(200), TimeSpan.FromSeconds(10), TimeSpan.FromMilliseconds(500)));
    }
}
