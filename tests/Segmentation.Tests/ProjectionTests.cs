using Crm.Contracts.Contacts;
using Crm.Contracts.Delivery;
using Crm.Segmentation.Tests.Infrastructure;

namespace Crm.Segmentation.Tests;

[Collection(SegmentationCollection.Name)]
public sealed class ProjectionTests(SegmentationFixture fx)
{
    [Fact]
    public async Task Should_project_a_contacts_profile_consent_orders_engagement_and_outcomes()
    {
        var tenant = SegmentationFixture.NewTenant();
        var contact = Guid.NewGuid();
        var now = DateTimeOffset.UtcNow;
        await fx.PublishAsync(new ContactUpserted(tenant, contact, "c-1", "minjun@example.kr", null, "ko-KR", "Asia/Seoul", ["vip"],
            """{"plan": "gold"}""", false, now, CreatedAt: now.AddDays(-400)));
        await fx.PublishAsync(new ConsentChanged(tenant, contact, "email", "marketing", "opted_in", "form", now, now));
        await fx.PublishAsync(new TransactionsRecorded(tenant, [
            new RecordedOrder(contact, "o-1", now.AddDays(-3), "KRW", 30000m, "completed", ["sku-1", "sku-2"], ["shoes"],
                [new RecordedLine("sku-1", "shoes", 1, 10000m), new RecordedLine("sku-2", "shoes", 2, 20000m)]),
            new RecordedOrder(null, "guest-1", now, "KRW", 1000m, "completed", ["sku-9"], []),
        ]));
        await fx.PublishAsync(new EngagementRecorded(tenant, [new RecordedEngagement("e-1", contact, "opened", null, "email", "m-1", "camp-1", now, """{"device":"ios"}""")]));
        await fx.PublishAsync(new MessagesSent(tenant, [new MessageSent(tenant, Guid.NewGuid(), contact, "email", "camp-1", "p-1", 1, now)]));

        await fx.WaitUntilAsync("SELECT count(*) FROM messages WHERE tenant_id = @tenant", new { tenant }, 1);
        await fx.WaitUntilAsync("SELECT count(*) FROM engagement WHERE tenant_id = @tenant", new { tenant }, 1);
        await fx.WaitUntilAsync("SELECT count(*) FROM consents WHERE tenant_id = @tenant", new { tenant }, 1);
        await fx.WaitUntilAsync("SELECT count(*) FROM orders WHERE tenant_id = @tenant", new { tenant }, 1);

        Assert.Equal(1L, await fx.QueryScalarAsync<long>("SELECT count(*) FROM orders WHERE tenant_id = @tenant", new { tenant })); // the guest order belongs to nobody
        Assert.Equal("sku-1,sku-2|shoes,shoes|10000,20000", await fx.QueryScalarAsync<string>(
            "SELECT array_to_string(skus, ',') || '|' || array_to_string(categories, ',') || '|' || array_to_string(amounts, ',') FROM orders WHERE tenant_id = @tenant", new { tenant }));
        Assert.True(await fx.QueryScalarAsync<bool>(
            "SELECT has_email AND NOT has_phone AND tags = '{vip}' AND attributes->>'plan' = 'gold' AND created_at < now() - interval '399 days' FROM contacts WHERE tenant_id = @tenant", new { tenant }));
        Assert.Equal("ios", await fx.QueryScalarAsync<string>("SELECT properties->>'device' FROM engagement WHERE tenant_id = @tenant", new { tenant }));
        await fx.WaitRefreshedAsync(tenant);
    }

    [Fact]
    public async Task Should_apply_profile_events_last_writer_wins_and_ignore_redeliveries()
    {
        var tenant = SegmentationFixture.NewTenant();
        var contact = Guid.NewGuid();
        var now = DateTimeOffset.UtcNow;
        var newer = new ContactUpserted(tenant, contact, "c-2", null, "+821012345678", "en-GB", null, [], "{}", false, now);
        var older = newer with { Locale = "ko-KR", OccurredAt = now.AddMinutes(-5) };
        await fx.PublishAsync(newer);
        await fx.WaitUntilAsync("SELECT count(*) FROM contacts WHERE tenant_id = @tenant AND locale = 'en-GB'", new { tenant }, 1);
        await fx.PublishAsync(older);
        // A later event proves the older one was handled before it.
        await fx.PublishAsync(new ConsentChanged(tenant, contact, "sms", "marketing", "opted_out", "stop_reply", now, null));
        await fx.WaitUntilAsync("SELECT count(*) FROM consents WHERE tenant_id = @tenant", new { tenant }, 1);
        Assert.Equal("en-GB", await fx.QueryScalarAsync<string>("SELECT locale FROM contacts WHERE tenant_id = @tenant", new { tenant }));
    }

    [Fact]
    public async Task Should_erase_every_projection_row_of_a_contact_and_keep_late_events_out()
    {
        var tenant = SegmentationFixture.NewTenant();
        var contact = Guid.NewGuid();
        var now = DateTimeOffset.UtcNow;
        await fx.PublishAsync(new ContactUpserted(tenant, contact, "c-3", "a@example.kr", null, null, null, [], "{}", false, now));
        await fx.PublishAsync(new ConsentChanged(tenant, contact, "email", "marketing", "opted_in", "form", now, now));
        await fx.PublishAsync(new TransactionsRecorded(tenant, [new RecordedOrder(contact, "o-3", now, "KRW", 5000m, "completed", ["s"], [])]));
        await fx.PublishAsync(new ChannelUnreachable(tenant, contact, "email", "550", now));
        await fx.WaitUntilAsync("SELECT count(*) FROM unreachable_channels WHERE tenant_id = @tenant", new { tenant }, 1);
        await fx.WaitUntilAsync("SELECT count(*) FROM orders WHERE tenant_id = @tenant", new { tenant }, 1);
        await fx.WaitUntilAsync("SELECT count(*) FROM consents WHERE tenant_id = @tenant", new { tenant }, 1);

        await fx.PublishAsync(new ContactErased(tenant, contact, now.AddSeconds(1)));
        await fx.WaitUntilAsync("SELECT count(*) FROM erased_contacts WHERE tenant_id = @tenant", new { tenant }, 1);
        // An order announced late (e.g. redelivered) must not bring the contact back; the engagement event after it proves it was handled.
        await fx.PublishAsync(new TransactionsRecorded(tenant, [new RecordedOrder(contact, "o-4", now, "KRW", 5000m, "completed", ["s"], [])]));
        var witness = Guid.NewGuid();
        await fx.PublishAsync(new TransactionsRecorded(tenant, [new RecordedOrder(witness, "o-5", now, "KRW", 1m, "completed", [], [])]));
        await fx.WaitUntilAsync("SELECT count(*) FROM orders WHERE tenant_id = @tenant AND contact_id = @witness", new { tenant, witness }, 1);

        foreach (var table in new[] { "contacts", "consents", "unreachable_channels", "orders", "engagement", "messages" })
            Assert.Equal(0L, await fx.QueryScalarAsync<long>($"SELECT count(*) FROM {table} WHERE tenant_id = @tenant AND contact_id = @contact", new { tenant, contact }));
    }
}
