using Crm.Contacts.Tests.Infrastructure;
using Crm.Contacts.V1;
using Crm.Contracts.Delivery;

namespace Crm.Contacts.Tests;

/// <summary>Delivery reports an address a provider refused for good (Twilio 21610); Contacts marks the channel.</summary>
[Collection(ContactsCollection.Name)]
public sealed class ChannelUnreachableTests(ContactsFixture fx)
{
    [Fact]
    public async Task Should_mark_the_sms_channel_unreachable_and_clear_it_when_the_number_changes()
    {
        var t = ContactsFixture.NewTenant();
        var contact = (await fx.Client.UpsertContactAsync(new UpsertContactRequest { ExternalId = "stopper", Phone = "010-1234-5678" }, fx.As(t))).Contact;

        var report = new ChannelUnreachable(t, Guid.Parse(contact.Id), "sms", "Twilio 21610: Attempt to send to unsubscribed recipient", DateTimeOffset.UtcNow);
        await fx.PublishAsync(async bus =>
        {
            await bus.Publish(report);
            await bus.Publish(report); // redelivered: changes nothing more
        });

        Contact got;
        var deadline = DateTime.UtcNow.AddSeconds(20);
        do
        {
            await Task.Delay(100);
            got = await fx.Client.GetContactAsync(new GetContactRequest { Contact = new ContactRef { Id = contact.Id } }, fx.As(t));
        } while (got.Unreachable.Count == 0 && DateTime.UtcNow < deadline);
        var mark = Assert.Single(got.Unreachable);
        Assert.Equal(Channel.Sms, mark.Channel);
        Assert.Contains("21610", mark.Reason);

        // A new number is worth trying again.
        var moved = await fx.Client.UpsertContactAsync(new UpsertContactRequest { ExternalId = "stopper", Phone = "010-2000-0000" }, fx.As(t));
        Assert.Empty(moved.Contact.Unreachable);
    }
}
