using Crm.BuildingBlocks.Outbox;
using Crm.Contacts.Tests.Infrastructure;
using Crm.Contacts.V1;
using Crm.Contracts.Contacts;
using Crm.Contracts.Delivery;
using Crm.TestSupport;
using Dapper;
using MassTransit;
using Npgsql;

namespace Crm.Contacts.Tests;

/// <summary>What Delivery sees come back from its messages reaches Contacts: engagement (once each) and unsubscribes as consent.</summary>
[Collection(ContactsCollection.Name)]
public sealed class WayBackTests(ContactsFixture fx)
{
    [Fact]
    public async Task Should_record_an_observed_click_once_as_engagement_and_announce_it_once()
    {
        var t = ContactsFixture.NewTenant();
        var contact = (await fx.Client.UpsertContactAsync(new UpsertContactRequest { ExternalId = "clicker", Email = "clicker@example.kr" }, fx.As(t))).Contact;
        var contactId = Guid.Parse(contact.Id);
        var messageId = Guid.NewGuid();
        var click = new ObservedEngagement($"delivery:click:{messageId}:0", contactId, "clicked", "email", messageId, "spring",
            DateTimeOffset.UtcNow, """{"link_index": "0", "url": "https://shop.example.kr/spring"}""");
        var bounce = new ObservedEngagement($"delivery:bounce:{messageId}", contactId, "bounced", "email", messageId, "spring",
            DateTimeOffset.UtcNow, """{"bounce_type": "soft"}""");

        // Delivery's outbox relays a batch twice (a publish confirm lost), and the provider repeated the click.
        var (first, second) = (NewId.NextGuid(), NewId.NextGuid());
        using var received = ReceivedMessages.Observe(fx.Host.App);
        await fx.PublishAsync(async bus =>
        {
            await bus.Publish(new EngagementObserved(t, [click, bounce]), ctx => ctx.MessageId = first);
            await bus.Publish(new EngagementObserved(t, [click]), ctx => ctx.MessageId = second);
        });
        await received.WaitAsync(first);
        await received.WaitAsync(second);

        await using var conn = new NpgsqlConnection(fx.ConnectionString);
        var types = (await conn.QueryAsync<string>("SELECT type FROM engagement_events WHERE tenant_id = @t ORDER BY type", new { t })).ToList();
        Assert.Equal(["bounced", "clicked"], types);
        var announced = (await conn.QueryAsync<string>("SELECT payload FROM outbox_messages WHERE message_type = @type AND payload LIKE @tenant",
            new { type = Outbox.TypeName<EngagementRecorded>(), tenant = $"%{t}%" })).ToList();
        // The two batches may be taken in either order (concurrent consumers): each event is announced once in all.
        var all = string.Join("\n", announced);
        Assert.Equal(1, System.Text.RegularExpressions.Regex.Count(all, "\"clicked\""));
        Assert.Equal(1, System.Text.RegularExpressions.Regex.Count(all, "\"bounced\""));
    }

    [Fact]
    public async Task Should_withdraw_marketing_consent_on_the_unsubscribe_link_with_the_request_as_evidence()
    {
        var t = ContactsFixture.NewTenant();
        var contact = (await fx.Client.UpsertContactAsync(new UpsertContactRequest { ExternalId = "leaver", Email = "leaver@example.kr" }, fx.As(t))).Contact;
        await fx.Client.SetConsentAsync(new SetConsentRequest
        {
            Contact = new ContactRef { Id = contact.Id }, Channel = Channel.Email, Purpose = Purpose.Marketing,
            Status = ConsentStatus.OptedIn, Source = ConsentSource.Form, Evidence = "signup form",
            OccurredAt = Google.Protobuf.WellKnownTypes.Timestamp.FromDateTimeOffset(DateTimeOffset.UtcNow.AddDays(-1)),
        }, fx.As(t));

        var id = NewId.NextGuid();
        var request = new UnsubscribeRequested(t, Guid.Parse(contact.Id), "email", Guid.NewGuid(), "spring", DateTimeOffset.UtcNow,
            "unsubscribe link of message 0 (one-click POST) at 2026-11-29T13:00:00Z from 203.0.113.7, user agent \"Gmail\"");
        using var received = ReceivedMessages.Observe(fx.Host.App);
        await fx.PublishAsync(async bus =>
        {
            await bus.Publish(request, ctx => ctx.MessageId = id);
            await bus.Publish(request, ctx => ctx.MessageId = id); // redelivered: recorded once
        });
        await received.WaitAsync(id, times: 2);

        var history = await fx.Client.ListConsentHistoryAsync(new ListConsentHistoryRequest { Contact = new ContactRef { Id = contact.Id } }, fx.As(t));
        var withdrawn = Assert.Single(history.Entries, e => e.Source == ConsentSource.UnsubscribeLink);
        Assert.Equal((Channel.Email, Purpose.Marketing, ConsentStatus.OptedOut), (withdrawn.Channel, withdrawn.Purpose, withdrawn.Status));
        Assert.Contains("203.0.113.7", withdrawn.Evidence, StringComparison.Ordinal);
        Assert.Contains("Gmail", withdrawn.Evidence, StringComparison.Ordinal);
        var now = await fx.Client.GetContactAsync(new GetContactRequest { Contact = new ContactRef { Id = contact.Id } }, fx.As(t));
        Assert.Equal(ConsentStatus.OptedOut, Assert.Single(now.Consents, c => c.Channel == Channel.Email && c.Purpose == Purpose.Marketing).Status);
    }
}
