using Crm.BuildingBlocks.Data;
using Crm.BuildingBlocks.Outbox;
using Crm.Contracts.Delivery;
using Dapper;
using MassTransit;
using Npgsql;

namespace Crm.Contacts.Features.Consent;

/// <summary>
/// A customer answered an SMS with an opt-out keyword: every contact of the workspace with that
/// number is opted out of marketing SMS (source stop_reply, the reply as evidence), through the same
/// ledger as SetConsent, so Delivery hears of it as ConsentChanged. Each reply is handled once.
/// </summary>
public sealed class SmsReplyConsumer(TenantDb db, ILogger<SmsReplyConsumer> logger) : IConsumer<SmsReplyReceived>
{
    public async Task Consume(ConsumeContext<SmsReplyReceived> context)
    {
        var reply = context.Message;
        if (!reply.OptOut) return;
        await using var scope = await db.BeginAsync(reply.TenantId, context.CancellationToken);
        var (conn, tx) = scope;
        if (!await Inbox.TryBeginAsync(conn, tx, nameof(SmsReplyConsumer), context.MessageId ?? Guid.Empty)) return;
        var contacts = (await conn.QueryAsync<Guid>(
            "SELECT contact_id FROM contacts WHERE tenant_id = @TenantId AND phone = @From AND erased_at IS NULL",
            new { reply.TenantId, reply.From }, tx)).AsList();
        foreach (var contactId in contacts)
            await ConsentLedger.RecordAsync(conn, tx, reply.TenantId, new ConsentLedger.Decision(
                contactId, "sms", "marketing", "opted_out", "stop_reply",
                $"SMS reply \"{reply.Body}\" from {reply.From} to {reply.To} ({reply.ProviderMessageId})", reply.ReceivedAt.UtcDateTime));
        await tx.CommitAsync(context.CancellationToken);
        logger.LogInformation("Opt-out reply from a number of {Tenant}: {Count} contact(s) opted out of marketing SMS", reply.TenantId, contacts.Count);
    }
}

public sealed class SmsReplyConsumerDefinition : ConsumerDefinition<SmsReplyConsumer>
{
    protected override void ConfigureConsumer(IReceiveEndpointConfigurator endpointConfigurator,
        IConsumerConfigurator<SmsReplyConsumer> consumerConfigurator, IRegistrationContext context) =>
        endpointConfigurator.UseMessageRetry(r => r.Exponential(5, TimeSpan.FromMilliseconds(100), TimeSpan.FromSeconds(5), TimeSpan.FromMilliseconds(200)));
}
