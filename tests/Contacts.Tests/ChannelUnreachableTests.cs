using Crm.Contacts.Tests.Infrastructure;
using Crm.Contacts.V1;
using Crm.Contracts.Delivery;
using Crm.TestSupport;
using MassTransit;

namespace Crm.Contacts.Tests;

/// <summary>Delivery reports an address a provider refused for good (Twilio 21610); Contacts marks the channel.</summary>
[Collection(ContactsCollection.Name)]
public sealed class ChannelUnreachableTests(ContactsFixture fx)
{
    [Fact]
    public async Task Should_mark_the_sms_channel_unreachable_once_and_clear_it_when_the_number_changes()
    {
        var t = ContactsFixture.NewTenant();
        var contact = (await fx.Client.UpsertContactAsync(new UpsertContactRequest { ExternalId = "stopper", Phone = "010-1234-5678" }, fx.As(t))).Contact;
        using var received = ReceivedMessages.Observe(fx.Host.App);
        var since = DateTimeOffset.UtcNow.AddMinutes(-5);
        var report = new ChannelUnreachable(t, Guid.Parse(contact.Id), "sms", "Twilio 21610: Attempt to send to unsubscribed recipient", since);
        var id = NewId.NextGuid();

        await fx.PublishAsync(bus => bus.Publish(report, ctx => ctx.MessageId = id));
        await received.WaitAsync(id);
        var marked = await GetAsync(t, contact.Id);
        var mark = Assert.Single(marked.Unreachable);
        Assert.Equal(Channel.Sms, mark.Channel);
        Assert.Contains("21610", mark.Reason);
        Assert.Equal(since.ToUnixTimeMilliseconds(), mark.Since.ToDateTimeOffset().ToUnixTimeMilliseconds());

        // The broker redelivers the same message, then Delivery reports another refusal: the contact is
        // left as it was (same mark, same since, not even touched), since the channel is already marked.
        var later = report with { Reason = "Twilio 21211: Invalid 'To' Phone Number", OccurredAt = DateTimeOffset.UtcNow };
        var laterId = NewId.NextGuid();
        await fx.PublishAsync(async bus =>
        {
            await bus.Publish(report, ctx => ctx.MessageId = id);
            await bus.Publish(later, ctx => ctx.MessageId = laterId);
        });
        await received.WaitAsync(id, times: 2);
        await received.WaitAsync(laterId);
        var again = await GetAsync(t, contact.Id);
        Assert.Equal(marked.Unreachable, again.Unreachable);
        Assert.Equal(marked.UpdatedAt, again.UpdatedAt);

        // A new number is worth trying again.
        var moved = await fx.Client.UpsertContactAsync(new UpsertContactRequest { ExternalId = "stopper", Phone = "010-2000-0000" }, fx.As(t));
        Assert.Empty(moved.Contact.Unreachable);
    }

    private async Task<Contact> GetAsync(string tenant, string id) =>
        await fx.Client.GetContactAsync(new GetContactRequest { Contact = new ContactRef { Id = id } }, fx.As(tenant));
}
