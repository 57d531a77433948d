using Crm.BuildingBlocks.Data;
using Crm.Contracts.Delivery;
using Dapper;
using MassTransit;
using Npgsql;

namespace Crm.Contacts.Features.Channels;

/// <summary>
/// Delivery reports an address a provider refused for good; the contact's channel is marked so every
/// service (and the marketer) sees it. Setting the same mark twice changes nothing.
/// </summary>
public sealed class ChannelUnreachableConsumer(TenantDb db, ILogger<ChannelUnreachableConsumer> logger) : IConsumer<ChannelUnreachable>
{
    public async Task Consume(ConsumeContext<ChannelUnreachable> context)
    {
        var e = context.Message;
        await using var scope = await db.BeginAsync(e.TenantId, context.CancellationToken);
        var conn = scope.Connection;
        var marked = await conn.ExecuteAsync("""
            UPDATE contacts SET unreachable = unreachable || jsonb_build_object(@Channel::text, jsonb_build_object('reason', @Reason::text, 'since', @OccurredAt)),
                updated_at = now()
            WHERE tenant_id = @TenantId AND contact_id = @ContactId AND NOT unreachable ? @Channel
            """, new { e.TenantId, e.ContactId, e.Channel, e.Reason, e.OccurredAt });
        await scope.CommitAsync(context.CancellationToken);
        if (marked > 0) logger.LogInformation("Contact {ContactId} of {Tenant}: {Channel} unreachable ({Reason})", e.ContactId, e.TenantId, e.Channel, e.Reason);
    }
}

public sealed class ChannelUnreachableConsumerDefinition : ConsumerDefinition<ChannelUnreachableConsumer>
{
    protected override void ConfigureConsumer(IReceiveEndpointConfigurator endpointConfigurator,
        IConsumerConfigurator<ChannelUnreachableConsumer> consumerConfigurator, IRegistrationContext context) =>
        endpointConfigurator.UseMessageRetry(r => r.Exponential(5, TimeSpan.FromMilliseconds(100), TimeSpan.FromSeconds(5), TimeSpan.FromMilliseconds(200)));
}
