using Crm.Contacts.Tests.Infrastructure;
using Crm.Contacts.V1;
using Crm.Contracts.Contacts;
using Crm.TestSupport;
using Dapper;
using MassTransit;
using Npgsql;

namespace Crm.Contacts.Tests;

/// <summary>Events are committed with the change and published by the relay, even if the process stops in between.</summary>
public sealed class OutboxTests : IAsyncLifetime
{
    private readonly ContactsFixture _fx = new();

    public Task InitializeAsync() => _fx.InitializeAsync();

    public Task DisposeAsync() => _fx.DisposeAsync();

    [Fact]
    public async Task Should_publish_an_event_committed_before_the_process_stopped_after_restart()
    {
        // The shared host's relay would publish at once; stop it, and run one without a relay:
        // the process then "dies" after the commit and before any publish.
        await _fx.Host.DisposeAsync();
        var tenant = ContactsFixture.NewTenant();
        string contactId;
        await using (var crashed = await _fx.StartHostAsync(relayEnabled: false))
        {
            var client = new ContactsService.ContactsServiceClient(crashed.Channel);
            contactId = (await client.UpsertContactAsync(new UpsertContactRequest { ExternalId = "outbox-1", Email = "o@example.com" }, crashed.As(tenant))).Contact.Id;
        }

        await using var db = new NpgsqlConnection(_fx.ConnectionString);
        var pending = await db.QuerySingleAsync<(Guid MessageId, DateTime? PublishedAt)>(
            "SELECT message_id, published_at FROM outbox_messages WHERE payload::json->>'contactId' = @contactId", new { contactId });
        Assert.Null(pending.PublishedAt);

        var received = new TaskCompletionSource<ConsumeContext<ContactUpserted>>(TaskCreationOptions.RunContinuationsAsynchronously);
        var bus = Bus.Factory.CreateUsingRabbitMq(cfg =>
        {
            cfg.Host(new Uri(_fx.RabbitMqUri));
            cfg.ReceiveEndpoint("outbox-test-capture", e => e.Handler<ContactUpserted>(ctx =>
            {
                if (ctx.Message.ContactId.ToString() == contactId) received.TrySetResult(ctx);
                return Task.CompletedTask;
            }));
        });
        await bus.StartAsync();
        try
        {
            await using var restarted = await _fx.StartHostAsync(relayEnabled: true);
            var ctx = await received.Task.WaitAsync(TimeSpan.FromSeconds(30));
            Assert.Equal(tenant, ctx.Message.TenantId);
            Assert.Equal("o@example.com", ctx.Message.Email);
            Assert.Equal(pending.MessageId, ctx.MessageId); // consumers dedupe on this id

            var deadline = DateTime.UtcNow.AddSeconds(10);
            DateTime? publishedAt;
            do
            {
                publishedAt = await db.QuerySingleAsync<DateTime?>(
                    "SELECT published_at FROM outbox_messages WHERE message_id = @MessageId", new { pending.MessageId });
            } while (publishedAt is null && DateTime.UtcNow < deadline && await Task.Delay(50).ContinueWith(_ => true));
            Assert.NotNull(publishedAt);
        }
        finally
        {
            await bus.StopAsync();
        }
    }
}
