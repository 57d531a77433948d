using Crm.BuildingBlocks.Outbox;
using Crm.Contacts.Tests.Infrastructure;
using Dapper;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;

namespace Crm.Contacts.Tests;

[Collection(ContactsCollection.Name)]
public sealed class OutboxRetentionTests(ContactsFixture fx)
{
    [Fact]
    public async Task Should_delete_published_and_processed_rows_past_retention_in_batches_and_keep_the_rest()
    {
        var type = $"test.retention.{Guid.NewGuid():N}";
        var consumer = $"retention-{Guid.NewGuid():N}";
        await using var db = new NpgsqlConnection(fx.ConnectionString);
        // 2,500 rows published eight days ago (more than two batches), one published yesterday, one
        // never published though eight days old; inbox rows eight days and one day old.
        await db.ExecuteAsync("""
            INSERT INTO outbox_messages (message_type, payload, created_at, published_at)
            SELECT @type, '{}', now() - interval '8 days', now() - interval '8 days' FROM generate_series(1, 2500);
            INSERT INTO outbox_messages (message_type, payload, created_at, published_at) VALUES (@type || '.recent', '{}', now() - interval '1 day', now() - interval '1 day');
            INSERT INTO outbox_messages (message_type, payload, created_at, published_at) VALUES (@type || '.unpublished', '{}', now() - interval '8 days', NULL);
            INSERT INTO inbox_messages (consumer, message_id, processed_at)
            SELECT @consumer, gen_random_uuid(), now() - interval '8 days' FROM generate_series(1, 1500);
            INSERT INTO inbox_messages (consumer, message_id, processed_at) VALUES (@consumer || '.recent', gen_random_uuid(), now() - interval '1 day');
            """, new { type, consumer });

        var (outbox, inbox) = await fx.Host.App.Services.GetRequiredService<OutboxRetention>().CleanAsync(CancellationToken.None);

        Assert.True(outbox >= 2500, $"deleted {outbox} outbox rows");
        Assert.True(inbox >= 1500, $"deleted {inbox} inbox rows");
        var left = (await db.QueryAsync<string>("SELECT message_type FROM outbox_messages WHERE message_type LIKE @type || '%'", new { type })).Order();
        Assert.Equal([type + ".recent", type + ".unpublished"], left);
        var inboxLeft = (await db.QueryAsync<string>("SELECT consumer FROM inbox_messages WHERE consumer LIKE @consumer || '%'", new { consumer })).ToList();
        Assert.Equal([consumer + ".recent"], inboxLeft);
    }
}
