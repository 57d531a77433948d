using Crm.BuildingBlocks.Errors;
using Crm.Contracts.Delivery;
using Crm.Delivery.Pipeline;
using MassTransit;

namespace Crm.Delivery.Features.Messages;

/// <summary>
/// The pipeline behind a RabbitMQ command: competing consumers on a quorum queue. Commands are
/// taken in batches (up to <see cref="DeliveryOptions.CommandsPerBatch"/>, or whatever has arrived
/// after a few milliseconds), so a campaign's fan-out of many small commands costs one round of
/// database statements per batch, not per command. A command delivered twice accepts nothing new
/// (idempotency keys) and processes nothing twice (claims). A command of a campaign cancelled with
/// CancelMessages (still on the bus when it was cancelled) is accepted and suppressed with the cancel's reason.
/// </summary>
public sealed class DeliverMessageConsumer(MessageIntake intake, DeliveryPipeline pipeline, Channels.ChannelRegistry channels, ILogger<DeliverMessageConsumer> logger)
    : IConsumer<Batch<DeliverMessage>>
{
    public const string IgnoreCapsRefused =
        "ignore_caps refused: a DeliverMessage command names no caller with the delivery.admin scope (use SendMessage with that scope)";

    public async Task Consume(ConsumeContext<Batch<DeliverMessage>> context)
    {
        var ct = context.CancellationToken;
        foreach (var commands in context.Message.Select(c => c.Message).GroupBy(c => c.TenantId, StringComparer.Ordinal))
        {
            var tenant = commands.Key;
            var valid = new List<DeliveryRequest>();
            foreach (var r in commands.SelectMany(c => c.Messages))
            {
                var v = new Validation();
                MessageIntake.Validate(r, "", v, channels);
                if (v.IsValid) valid.Add(r);
                else logger.LogWarning("DeliverMessage for {Tenant} rejected {Key}: {Problems}", tenant, r.IdempotencyKey,
                    string.Join("; ", v.Violations.Select(x => $"{x.Field}: {x.Description}")));
            }
            // A key repeated inside the batch is one message.
            valid = valid.DistinctBy(r => r.IdempotencyKey).ToList();
            if (valid.Count == 0) continue;
            // A command carries no caller whose scopes could be checked, so it may not skip the caps: such a
            // message is accepted and suppressed with the reason, visible on its timeline, never sent uncapped.
            var refused = valid.Where(r => r.IgnoreCaps).Select(r => r.IdempotencyKey).ToHashSet(StringComparer.Ordinal);
            if (refused.Count > 0) valid = valid.Select(r => r.IgnoreCaps ? r with { IgnoreCaps = false } : r).ToList();
            var (claimed, scheduled, repeats) = await intake.AcceptManyAsync(tenant, valid, pipeline.Lease, ct);
            if (refused.Count > 0)
            {
                await pipeline.SuppressAsync(tenant, claimed.Concat(scheduled).Where(m => refused.Contains(m.IdempotencyKey)), IgnoreCapsRefused, ct);
                claimed = [.. claimed.Where(m => !refused.Contains(m.IdempotencyKey))];
            }
            var tombstoned = await intake.CancelledCampaignsAsync(tenant, claimed.Concat(scheduled), ct);
            if (tombstoned.Count > 0)
            {
                foreach (var byReason in claimed.Concat(scheduled).Where(m => m.CampaignId is not null && tombstoned.ContainsKey(m.CampaignId))
                             .GroupBy(m => tombstoned[m.CampaignId!]))
                    await pipeline.SuppressAsync(tenant, byReason, byReason.Key, ct);
                claimed = [.. claimed.Where(m => m.CampaignId is null || !tombstoned.ContainsKey(m.CampaignId))];
            }
            await pipeline.ProcessClaimedAsync(claimed);
            if (repeats.Count > 0) await pipeline.ProcessAsync(tenant, [.. repeats.Values], ct); // claims only what is still due
        }
    }
}

/// <remarks>The batch options also set the endpoint's prefetch and concurrency to commands per batch × batches.</remarks>
public sealed class DeliverMessageConsumerDefinition(DeliveryOptions options) : ConsumerDefinition<DeliverMessageConsumer>
{
    protected override void ConfigureConsumer(IReceiveEndpointConfigurator endpointConfigurator,
        IConsumerConfigurator<DeliverMessageConsumer> consumerConfigurator, IRegistrationContext context)
    {
        // A database or Redis hiccup is retried; the pipeline itself never sends twice.
        endpointConfigurator.UseMessageRetry(r => r.Exponential(5, TimeSpan.FromMilliseconds(200), TimeSpan.FromSeconds(10), TimeSpan.FromMilliseconds(500)));
        consumerConfigurator.Options<BatchOptions>(o => o
            .SetMessageLimit(options.CommandsPerBatch)
            .SetConcurrencyLimit(options.CommandConcurrency)
            .SetTimeLimit(options.CommandBatchWait));
    }
}
