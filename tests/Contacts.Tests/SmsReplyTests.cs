using Crm.Contacts.Tests.Infrastructure;
using Crm.Contacts.V1;
using Crm.Contracts.Delivery;
using Crm.TestSupport;
using MassTransit;

namespace Crm.Contacts.Tests;

/// <summary>A customer answers an ad with 수신거부: their marketing SMS consent is withdrawn, with the reply as evidence.</summary>
[Collection(ContactsCollection.Name)]
public sealed class SmsReplyTests(ContactsFixture fx)
{
    [Fact]
    public async Task Should_opt_the_number_out_of_marketing_sms_once_with_the_reply_as_evidence()
    {
        var t = ContactsFixture.NewTenant();
        var contact = (await fx.Client.UpsertContactAsync(new UpsertContactRequest { ExternalId = "replier", Phone = "010-3434-0000" }, fx.As(t))).Contact;
        var consent = new SetConsentRequest
        {
            Contact = new ContactRef { Id = contact.Id }, Channel = Channel.Sms, Purpose = Purpose.Marketing,
            Status = ConsentStatus.OptedIn, Source = ConsentSource.Form, Evidence = "signup form",
            OccurredAt = Google.Protobuf.WellKnownTypes.Timestamp.FromDateTimeOffset(DateTimeOffset.UtcNow.AddDays(-1)),
        };
        await fx.Client.SetConsentAsync(consent, fx.As(t));

        var id = NewId.NextGuid();
        var stop = new SmsReplyReceived(t, "+821034340000", "+15005550006", "수신거부", "SM123", OptOut: true, DateTimeOffset.UtcNow);
        using var received = ReceivedMessages.Observe(fx.Host.App);
        await fx.PublishAsync(async bus =>
        {
            await bus.Publish(new SmsReplyReceived(t, "+821034340000", "+15005550006", "고마워요", "SM122", OptOut: false, DateTimeOffset.UtcNow));
            await bus.Publish(stop, ctx => ctx.MessageId = id);
            await bus.Publish(stop, ctx => ctx.MessageId = id); // redelivered: recorded once
        });
        await received.WaitAsync(id, times: 2); // both handled: whatever the redelivery did is done
        var history = await fx.Client.ListConsentHistoryAsync(new ListConsentHistoryRequest { Contact = new ContactRef { Id = contact.Id } }, fx.As(t));

        var stopped = Assert.Single(history.Entries, e => e.Source == ConsentSource.StopReply);
        Assert.Equal((Channel.Sms, Purpose.Marketing, ConsentStatus.OptedOut), (stopped.Channel, stopped.Purpose, stopped.Status));
        Assert.Contains("수신거부", stopped.Evidence, StringComparison.Ordinal);
        Assert.Contains("SM123", stopped.Evidence, StringComparison.Ordinal);
        var now = await fx.Client.GetContactAsync(new GetContactRequest { Contact = new ContactRef { Id = contact.Id } }, fx.As(t));
        Assert.Equal(ConsentStatus.OptedOut, Assert.Single(now.Consents, c => c.Channel == Channel.Sms && c.Purpose == Purpose.Marketing).Status);
    }
}
