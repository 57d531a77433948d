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
}
