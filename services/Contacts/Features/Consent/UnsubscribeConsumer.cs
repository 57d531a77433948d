using Crm.BuildingBlocks.Data;
using Crm.BuildingBlocks.Outbox;
using Crm.Contracts.Delivery;
using MassTransit;

namespace Crm.Contacts.Features.Consent;

/// <summary>
/// A recipient used the platform's unsubscribe link: the contact's marketing consent on that channel is
/// withdrawn (source unsubscribe_link, the request as evidence) through the same ledger as SetConsent, so
/// Delivery and Segmentation hear of it as ConsentChanged. Each request is handled once.
/// </summary>
public sealed class UnsubscribeConsumer(TenantDb db, ILogger<UnsubscribeConsumer> logger) : IConsumer<UnsubscribeRequested>
{
    public async Task Consume(ConsumeContext<UnsubscribeRequested> context)
    {
        var u = context.Message;
        await using var scope = await db.BeginAsync(u.TenantId, context.CancellationToken);
        var (conn, tx) = scope;
        if (!await Inbox.TryBeginAsync(conn, tx, nameof(UnsubscribeConsumer), context.MessageId ?? Guid.Empty)) return;
        var known = await Dapper.SqlMapper.ExecuteScalarAsync<bool>(conn,
            "SELECT EXISTS (SELECT 1 FROM contacts WHERE tenant_id = @TenantId AND contact_id = @ContactId AND erased_at IS NULL)", new { u.TenantId, u.ContactId }, tx);
        if (known)
            await ConsentLedger.RecordAsync(conn, tx, u.TenantId, new ConsentLedger.Decision(
                u.ContactId, u.Channel, "marketing", "opted_out", "unsubscribe_link", u.Evidence, u.RequestedAt.UtcDateTime));
        await tx.CommitAsync(context.CancellationToken);
        logger.LogInformation("Unsubscribe link of message {MessageId} ({Tenant}): {Channel} marketing withdrawn", u.MessageId, u.TenantId, u.Channel);
    }
}

public sealed class UnsubscribeConsumerDefinition : ConsumerDefinition<UnsubscribeConsumer>
{
    protected override void ConfigureConsumer(IReceiveEndpointConfigurator endpointConfigurator,
        IConsumerConfigurator<UnsubscribeConsumer> consumerConfigurator, IRegistrationContext context) =>
        endpointConfigurator.UseMessageRetry(r => r.Exponential(5, TimeSpan.FromMilliseconds(100), TimeSpan.FromSeconds(5), TimeSpan.FromMilliseconds(200)));
}
