using Crm.Contracts.Delivery;
using Crm.Delivery.Tests.Infrastructure;
using Crm.Delivery.V1;
using Dapper;
using Npgsql;

namespace Crm.Delivery.Tests;

/// <summary>A cap of 3 per 7 days holds while two workers compete for 10,000 messages to 100 contacts — with Redis kept, and with Redis emptied mid-run.</summary>
public sealed class FrequencyCapTests : IAsyncLifetime
{
    private readonly DeliveryFixture _fx = new();

    public Task InitializeAsync() => _fx.InitializeAsync();

    public Task DisposeAsync() => _fx.DisposeAsync();

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Should_hold_a_weekly_cap_across_two_workers(bool forgetRedisMidRun)
    {
        await _fx.StartHostAsync(); // the second replica on the same queue
        var weekly = new FrequencyCapRule { RuleId = "weekly-3", Scope = CapScope.AllMarketing, Limit = 3, WindowSeconds = 7 * 24 * 3600 };
        var t = await _fx.NewWorkspaceAsync(smsPerSecond: 10_000, weekly);
        var contacts = new List<Guid>();
        for (var i = 0; i < 100; i++)
            contacts.Add(await _fx.NewContactAsync(t, phone: $"+82105000{i:D4}", consents: [("sms", "marketing", "opted_in"), ("sms", "marketing_night", "opted_in")]));

        // 100 commands, each a message to every contact: 10,000 messages, 100 per contact.
        for (var round = 0; round < 100; round++)
        {
            await _fx.PublishAsync(new DeliverMessage(t, contacts.Select(c =>
                new DeliveryRequest($"promo-{round}-{c:N}", c, "sms", "marketing", "spring", null, null, $"봄 세일 {round}")).ToList()));
            if (forgetRedisMidRun && round is 30 or 60) await _fx.ForgetRedisAsync();
        }
        if (forgetRedisMidRun)
        {
            await Task.Delay(500);
            await _fx.ForgetRedisAsync();
        }
        await _fx.WaitUntilAsync($"SELECT count(*) FROM messages WHERE tenant_id = '{t}' AND status IN ('sent', 'suppressed')", 10_000, seconds: 240);

        var perContact = _fx.Twilio.Messages.Where(m => m.To?.StartsWith("+82105000", StringComparison.Ordinal) == true)
            .GroupBy(m => m.To).ToDictionary(g => g.Key!, g => g.Count());
        Assert.Equal(100, perContact.Count);
        Assert.All(perContact.Values, n => Assert.Equal(3, n));

        await using var conn = new NpgsqlConnection(_fx.ConnectionString);
        var suppressed = await conn.QueryAsync<(string Reason, string RuleId, long N)>(
            "SELECT reason, rule_id, count(*) FROM messages WHERE tenant_id = @t AND status = 'suppressed' GROUP BY 1, 2", new { t });
        var only = Assert.Single(suppressed);
        Assert.Equal(("frequency cap weekly-3: 3 per 7d", "weekly-3", 9_700L), only);
    }

    [Fact]
    public async Task Should_rebuild_each_contacts_caps_from_its_own_ledger_when_a_batch_finds_Redis_empty()
    {
        var weekly = new FrequencyCapRule { RuleId = "weekly-3", Scope = CapScope.AllMarketing, Limit = 3, WindowSeconds = 7 * 24 * 3600 };
        var t = await _fx.NewWorkspaceAsync(smsPerSecond: 10_000, weekly);
        (string, string, string)[] consents = [("sms", "marketing", "opted_in"), ("sms", "marketing_night", "opted_in")];
        var contacts = new[]
        {
            await _fx.NewContactAsync(t, phone: "+821060000001", consents: consents),
            await _fx.NewContactAsync(t, phone: "+821060000002", consents: consents),
            await _fx.NewContactAsync(t, phone: "+821060000003", consents: consents),
        };
        SendMessageRequest Sms(Guid contact, string key) => new()
        {
            IdempotencyKey = key, ContactId = contact.ToString(), Channel = Channel.Sms, Purpose = Purpose.Marketing, TextBody = "봄 세일",
        };
        // Histories of 3, 1 and 0 messages this week, then Redis forgets every set.
        var before = new SendMessagesRequest();
        before.Messages.Add(Enumerable.Range(0, 3).Select(i => Sms(contacts[0], $"before-a-{i}")));
        before.Messages.Add(Sms(contacts[1], "before-b-0"));
        await _fx.Client.SendMessagesAsync(before, _fx.As(t));
        await _fx.ForgetRedisAsync();

        // One batch, three messages to each: every contact's sets are loaded together, each from its own history.
        var batch = new SendMessagesRequest();
        foreach (var (contact, n) in contacts.Select((c, n) => (c, n)))
            batch.Messages.Add(Enumerable.Range(0, 3).Select(i => Sms(contact, $"after-{n}-{i}")));
        var results = (await _fx.Client.SendMessagesAsync(batch, _fx.As(t))).Messages;

        var sentPerContact = contacts.Select(c => results.Count(m => m.ContactId == c.ToString() && m.Status == MessageStatus.Sent)).ToArray();
        Assert.Equal([0, 2, 3], sentPerContact);
        Assert.All(results.Where(m => m.Status != MessageStatus.Sent), m => Assert.Equal(MessageStatus.Suppressed, m.Status));
        // At the provider: three each this week, before and after together.
        Assert.Equal([3, 3, 3], new[] { "+821060000001", "+821060000002", "+821060000003" }.Select(to => _fx.Twilio.Messages.Count(m => m.To == to)));
    }
}
