using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;
using Crm.Campaigns.Features.Experiments;
using Crm.Campaigns.Tests.Infrastructure;
using Dapper;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;

namespace Crm.Campaigns.Tests.Experiments;

/// <summary>
/// A campaign with variants, a holdout and a conversion goal, one run whose recipients are written as the
/// snapshot writes them and assigned by the service's <see cref="VariantAssignment"/>, and "sent" outcomes as
/// the progress consumers record them from Delivery's events.
/// </summary>
public sealed class ExperimentScenario(CampaignsFixture fixture, string tenant)
{
    public Guid CampaignId { get; } = Guid.NewGuid();
    public Guid RunId { get; } = Guid.NewGuid();
    public List<Guid> Contacts { get; } = [];
    public Dictionary<Guid, string?> Variants { get; } = [];  // contact -> variant, null for the holdout
    public string Tenant => tenant;

    public async Task CreateAsync(string name, double holdoutShare, (string Id, string Name, int Weight)[] variants, int recipients,
        DateTimeOffset sentAt, string goalKind = "order", string? goalEvent = null, int windowDays = 7, bool recordSends = true)
    {
        await using var conn = new NpgsqlConnection(fixture.ConnectionString);
        await conn.OpenAsync();
        var now = sentAt.UtcDateTime;
        await conn.ExecuteAsync("""
            INSERT INTO campaigns (tenant_id, campaign_id, name, status, channels, purpose, category, holdout_share, conversion_kind, conversion_event,
                                   conversion_window_days, created_at, updated_at)
            VALUES (@tenant, @CampaignId, @name, 'running', '{email}', 'marketing', 'promotions', @holdoutShare, @goalKind, @goalEvent, @windowDays, @now, @now);
            INSERT INTO campaign_runs (tenant_id, run_id, campaign_id, status, seed, scheduled_for, started_at, created_at)
            VALUES (@tenant, @RunId, @CampaignId, 'sending', 42, @now, @now, @now);
            """, new { tenant, CampaignId, RunId, name, holdoutShare, goalKind, goalEvent, windowDays, now });
        var position = 0;
        foreach (var v in variants)
            await conn.ExecuteAsync("""
                INSERT INTO campaign_variants (tenant_id, campaign_id, variant_id, name, weight, template_id, position)
                VALUES (@tenant, @CampaignId, @Id, @Name, @Weight, gen_random_uuid(), @position)
                """, new { tenant, CampaignId, v.Id, v.Name, v.Weight, position = position++ });
        Contacts.AddRange(Enumerable.Range(0, recipients).Select(_ => Guid.NewGuid()).Order());
        await conn.ExecuteAsync("""
            INSERT INTO recipients (tenant_id, run_id, contact_id, campaign_id) SELECT @tenant, @RunId, c, @CampaignId FROM unnest(@contacts) c
            """, new { tenant, RunId, CampaignId, contacts = Contacts.ToArray() });

        // What the snapshot does once the recipients are written.
        await using (var tx = await conn.BeginTransactionAsync())
        {
            await VariantAssignment.AssignAsync(conn, tx, tenant, RunId, CancellationToken.None);
            await tx.CommitAsync();
        }
        foreach (var (contact, variant) in await conn.QueryAsync<(Guid, string?)>(
                     "SELECT contact_id, variant_id FROM recipients WHERE tenant_id = @tenant AND run_id = @RunId", new { tenant, RunId }))
            Variants[contact] = variant;

        if (recordSends) await RecordSendsAsync(sentAt);
    }

    /// <summary>What the progress consumers record from MessagesSent for everyone the fan-out sent to.</summary>
    public async Task RecordSendsAsync(DateTimeOffset sentAt)
    {
        await using var conn = new NpgsqlConnection(fixture.ConnectionString);
        var now = sentAt.UtcDateTime;
        await conn.ExecuteAsync("""
            UPDATE recipients SET status = 'sent', channel = 'email', message_id = gen_random_uuid(), enqueued_at = @now, outcome_at = @now
            WHERE tenant_id = @tenant AND run_id = @RunId AND NOT holdout;
            INSERT INTO outcomes (tenant_id, run_id, contact_id, message_id, kind, channel, occurred_at)
            SELECT tenant_id, run_id, contact_id, message_id, 'sent', 'email', @now FROM recipients
            WHERE tenant_id = @tenant AND run_id = @RunId AND NOT holdout
            """, new { tenant, RunId, now });
    }

    public IEnumerable<Guid> Holdout => Variants.Where(v => v.Value is null).Select(v => v.Key);
    public IEnumerable<Guid> InVariant(string id) => Variants.Where(v => v.Value == id).Select(v => v.Key);

    /// <summary>The holdout draw, recomputed here: md5("holdout:campaign:contact"), its first 52 bits over 2^52.</summary>
    public static double Bucket(string salt, Guid campaign, Guid contact)
    {
        var hex = Convert.ToHexStringLower(MD5.HashData(Encoding.UTF8.GetBytes($"{salt}:{campaign}:{contact}")))[..13];
        return Convert.ToInt64(hex, 16) / 4503599627370496.0;
    }
}

/// <summary>Counts the messages one consumer of the service has finished with (handled or faulted), by message id.</summary>
public sealed class ConsumedBy : IReceiveObserver, IDisposable
{
    private readonly string _consumer;
    private readonly ConcurrentDictionary<Guid, int> _done = new();
    private readonly ConnectHandle _handle;

    public ConsumedBy(CampaignsFixture fixture, string consumer)
    {
        _consumer = consumer;
        _handle = fixture.Host.App.Services.GetRequiredService<IBus>().ConnectReceiveObserver(this);
    }

    public async Task WaitAsync(Guid messageId, int times = 1, int seconds = 30)
    {
        var deadline = DateTime.UtcNow.AddSeconds(seconds);
        while (_done.GetValueOrDefault(messageId) < times)
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"{_consumer} did not finish message {messageId} {times} time(s)");
            await Task.Delay(20);
        }
    }

    private Task Done(ConsumeContext context, string consumerType)
    {
        if (consumerType.Contains(_consumer, StringComparison.Ordinal) && context.MessageId is { } id) _done.AddOrUpdate(id, 1, (_, n) => n + 1);
        return Task.CompletedTask;
    }

    public Task PreReceive(ReceiveContext context) => Task.CompletedTask;
    public Task PostReceive(ReceiveContext context) => Task.CompletedTask;
    public Task PostConsume<T>(ConsumeContext<T> context, TimeSpan duration, string consumerType) where T : class => Done(context, consumerType);
    public Task ConsumeFault<T>(ConsumeContext<T> context, TimeSpan duration, string consumerType, Exception exception) where T : class =>
        Done(context, consumerType);
    public Task ReceiveFault(ReceiveContext context, Exception exception) => Task.CompletedTask;
    public void Dispose() => _handle.Disconnect();
}
