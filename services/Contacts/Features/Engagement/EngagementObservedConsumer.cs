using Crm.BuildingBlocks.Data;
using Crm.Contracts.Contacts;
using Crm.Contracts.Delivery;
using MassTransit;

namespace Crm.Contacts.Features.Engagement;

/// <summary>
/// What Delivery saw come back from its messages (receipts, opens, clicks, bounces, complaints, unsubscribes)
/// becomes engagement, through the same log as RecordEngagement, so Segmentation hears of it as
/// EngagementRecorded. Each observation carries its dedupe key as the event id: a repeat records nothing.
/// </summary>
public sealed class EngagementObservedConsumer(TenantDb db) : IConsumer<EngagementObserved>
{
    public async Task Consume(ConsumeContext<EngagementObserved> context)
    {
        var e = context.Message;
        if (e.Events.Count == 0) return;
        await using var scope = await db.BeginAsync(e.TenantId, context.CancellationToken);
        var (conn, tx) = scope;
        await EngagementLog.RecordAsync(conn, tx, e.TenantId, e.Events
            .Select(o => new RecordedEngagement(o.EventId, o.ContactId, o.Type, null, o.Channel, o.MessageId.ToString(), o.CampaignId,
                o.OccurredAt, o.PropertiesJson))
            .ToArray(), onlyKnownContacts: true);
        await tx.CommitAsync(context.CancellationToken);
    }
}

public sealed class EngagementObservedConsumerDefinition : ConsumerDefinition<EngagementObservedConsumer>
{
    protected override void ConfigureConsumer(IReceiveEndpointConfigurator endpointConfigurator,
        IConsumerConfigurator<EngagementObservedConsumer> consumerConfigurator, IRegistrationContext context) =>
        endpointConfigurator.UseMessageRetry(r => r.Exponential(5, TimeSpan.FromMilliseconds(100), TimeSpan.FromSeconds(5), TimeSpan.FromMilliseconds(200)));
}
