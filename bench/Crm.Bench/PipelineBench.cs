using System.Diagnostics;
using System.Text;
using Crm.BuildingBlocks.Tenancy;
using Crm.Contracts.Delivery;
using Crm.Delivery.V1;
using Crm.TestSupport;
using Dapper;
using Grpc.Core;
using Grpc.Net.Client;
using MassTransit;
using Npgsql;
using RabbitMQ.Client;
using RabbitMQ.Client.Events;

namespace Crm.Bench;

/// <summary>
/// Messages through the whole Delivery pipeline (DeliverMessage on RabbitMQ → dedupe, consent,
/// sending window, three cap rules, throttle, send to a no-op provider, status and events in
/// PostgreSQL), against raw RabbitMQ.Client publish + consume of the same number of messages.
/// Both sides are measured warm and as the better of two runs: the machines this runs on are noisy.
/// </summary>
public static class PipelineBench
{
    private const int Contacts = 2_000;
    private const int PerContact = 10;
    private const int Messages = Contacts * PerContact;
    private static readonly TestTokenKeys Keys = TestTokenKeys.Generate("bench");

    public static async Task RunAsync(BenchEnvironment env)
    {
        // The baseline warm as well: the better of two runs.
        var baseline = Math.Max(await RawRabbitAsync(env), await RawRabbitAsync(env));

        var db = await env.FreshDatabaseAsync("crm_bench_delivery");
        var vhost = $"bench-{Guid.NewGuid():N}";
        var rabbit = await Crm.TestSupport.TestServers.CreateVirtualHostAsync(vhost);
        using var service = await env.StartServiceAsync("Crm.Delivery", new Dictionary<string, string>
        {
            ["ConnectionStrings:Postgres"] = db,
            ["ConnectionStrings:RabbitMq"] = rabbit,
            ["ConnectionStrings:Redis"] = Environment.GetEnvironmentVariable("CRM_REDIS")!,
            ["Tenancy:PublicKeys:0:KeyId"] = Keys.KeyId,
            ["Tenancy:PublicKeys:0:Pem"] = Keys.PublicPem,
            ["Delivery:SecretKey"] = Convert.ToBase64String(new byte[32]),
            ["Delivery:RedisKeyPrefix"] = $"bench-{Guid.NewGuid():N}:",
            ["Delivery:AllowNoopProvider"] = "true",
            ["Delivery:AllowPrivateProviderAddresses"] = "true", // the provider fakes are on loopback
        });
        using var channel = GrpcChannel.ForAddress(service.GrpcAddress);
        var client = new DeliveryService.DeliveryServiceClient(channel);
        var tokens = Keys.Issuer();
        // The run ends when every message's outcome has been published (the last step of the pipeline):
        // counted from the service's events on the bus, not by polling its database.
        var outcomes = new OutcomeCounter();
        var bus = Bus.Factory.CreateUsingRabbitMq(cfg =>
        {
            cfg.Host(new Uri(rabbit));
            cfg.ReceiveEndpoint($"bench-outcomes-{Guid.NewGuid():N}", e =>
            {
                e.AutoDelete = true;
                e.Durable = false;
                e.Handler<MessagesSent>(ctx => outcomes.Add(ctx.Message.TenantId, ctx.Message.Messages.Count));
                e.Handler<MessagesSuppressed>(ctx => outcomes.Add(ctx.Message.TenantId, ctx.Message.Messages.Count));
                e.Handler<MessagesFailed>(ctx => outcomes.Add(ctx.Message.TenantId, ctx.Message.Messages.Count));
            });
        });
        await bus.StartAsync();

        // A service runs for days: measure it warm, after another workspace's messages have JIT-compiled the path.
        var warmUp = await SetUpTenantAsync(client, db, tokens, "bench-warm-up", 200);
        await PublishAsync(bus, "bench-warm-up", warmUp, rounds: 5);
        await outcomes.WaitAsync("bench-warm-up", warmUp.Length * 5);

        // Measured like the baseline: the better of two runs (each in a workspace of its own).
        var rate = 0.0;
        foreach (var tenant in new[] { "bench", "bench-2" })
        {
            var contacts = await SetUpTenantAsync(client, db, tokens, tenant, Contacts);
            var cpu = (Service: service.CpuSeconds(), Postgres: ServiceProcess.PostgresCpuSeconds(), Broker: ServiceProcess.CpuOfCommand("beam.smp"));
            var watch = Stopwatch.StartNew();
            await PublishAsync(bus, tenant, contacts, PerContact);
            var published = watch.Elapsed.TotalSeconds;
            await outcomes.WaitAsync(tenant, Messages);
            var seconds = watch.Elapsed.TotalSeconds;
            await using var conn = new NpgsqlConnection(db);
            var sent = await conn.ExecuteScalarAsync<long>("SELECT count(*) FROM messages WHERE tenant_id = @tenant AND status = 'sent'", new { tenant });
            if (sent != Messages) throw new InvalidOperationException($"only {sent} of {Messages} messages were sent");
            rate = Math.Max(rate, Messages / seconds);
            Console.Error.WriteLine(FormattableString.Invariant(
                $"pipeline {tenant}: {Messages / seconds:F0} msg/s; CPU: service {service.CpuSeconds() - cpu.Service:F1} s, postgres {ServiceProcess.PostgresCpuSeconds() - cpu.Postgres:F1} s, rabbitmq {ServiceProcess.CpuOfCommand("beam.smp") - cpu.Broker:F1} s, wall {seconds:F1} s (published in {published:F2} s)"));
        }
        Console.WriteLine(FormattableString.Invariant(
            $"bench pipeline: {rate:F0} msg/s, {rate / baseline:F2}x of raw RabbitMQ.Client (best of two runs of {Messages} messages; raw publish+consume {baseline:F0} msg/s, best of two)"));
        await bus.StopAsync();
    }

    /// <summary>A workspace with a no-op SMS account, two marketing caps, a sender profile, and contacts with consent.</summary>
    private static async Task<Guid[]> SetUpTenantAsync(DeliveryService.DeliveryServiceClient client, string db, IdentityTokenIssuer tokens, string tenant, int count)
    {
        var auth = new Metadata { { "authorization", "Bearer " + tokens.Issue(tenant, [Scope.All]) } };
        await client.UpsertProviderAccountAsync(new UpsertProviderAccountRequest
        {
            Account = new ProviderAccount { AccountId = "noop", Kind = ProviderKind.Noop, Channel = Channel.Sms, IsDefault = true, MessagesPerSecond = 100_000 },
        }, auth);
        await client.SetFrequencyCapRulesAsync(new SetFrequencyCapRulesRequest
        {
            Rules =
            {
                new FrequencyCapRule { RuleId = "daily", Scope = CapScope.AllMarketing, Limit = 1000, WindowSeconds = 86_400 },
                new FrequencyCapRule { RuleId = "weekly-sms", Scope = CapScope.Channel, ScopeValue = "sms", Limit = 1000, WindowSeconds = 604_800 },
            },
        }, auth);
        await client.SetSenderProfileAsync(new SetSenderProfileRequest { Profile = new SenderProfile { SenderName = "벤치", OptOutNumber = "080-000-0000" } }, auth);

        // Contacts with consent, as the projection would hold them.
        var contacts = Enumerable.Range(0, count).Select(_ => Guid.NewGuid()).ToArray();
        await using var conn = new NpgsqlConnection(db);
        await conn.ExecuteAsync("""
            INSERT INTO contact_channels (tenant_id, contact_id, phone, time_zone, version_at)
            SELECT @tenant, c, '+8210' || lpad(n::text, 8, '0'), 'UTC', now() FROM unnest(@contacts) WITH ORDINALITY AS u(c, n);
            INSERT INTO contact_consents (tenant_id, contact_id, channel, purpose, status, changed_at)
            SELECT @tenant, c, 'sms', p, 'opted_in', now() FROM unnest(@contacts) AS c, unnest(ARRAY['marketing', 'marketing_night']) AS p;
            """, new { tenant, contacts });
        return contacts;
    }

    /// <summary>DeliverMessage commands of 100 recipients, each contact once per round.</summary>
    private static async Task PublishAsync(IBusControl bus, string tenant, Guid[] contacts, int rounds)
    {
        for (var round = 0; round < rounds; round++)
            foreach (var chunk in contacts.Chunk(100))
                await bus.Publish(new DeliverMessage(tenant, chunk.Select(c =>
                    new DeliveryRequest($"b-{round}-{c:N}", c, "sms", "marketing", "bench", null, null, "봄 세일 20% 할인")).ToList()));
    }

    /// <summary>Messages with an outcome per workspace, from the batch events Delivery publishes.</summary>
    private sealed class OutcomeCounter
    {
        private readonly System.Collections.Concurrent.ConcurrentDictionary<string, int> _counts = new();

        public Task Add(string tenant, int messages)
        {
            _counts.AddOrUpdate(tenant, messages, (_, n) => n + messages);
            return Task.CompletedTask;
        }

        public async Task WaitAsync(string tenant, int count)
        {
            var deadline = Stopwatch.StartNew();
            while (_counts.GetValueOrDefault(tenant) < count)
            {
                if (deadline.Elapsed > TimeSpan.FromMinutes(5))
                    throw new TimeoutException($"{_counts.GetValueOrDefault(tenant)} of {count} outcomes of {tenant} published");
                await Task.Delay(20);
            }
        }
    }

    /// <summary>Publish and consume the same number of messages (the size of one delivery request) with the bare client.</summary>
    private static async Task<double> RawRabbitAsync(BenchEnvironment env)
    {
        var factory = new ConnectionFactory { Uri = new Uri(Environment.GetEnvironmentVariable("CRM_RABBITMQ")!) };
        await using var connection = await factory.CreateConnectionAsync();
        await using var publishChannel = await connection.CreateChannelAsync();
        await using var consumeChannel = await connection.CreateChannelAsync();
        var queue = (await publishChannel.QueueDeclareAsync($"bench-raw-{Guid.NewGuid():N}", durable: true, exclusive: false, autoDelete: false,
            arguments: new Dictionary<string, object?> { ["x-queue-type"] = "quorum" })).QueueName;
        var body = Encoding.UTF8.GetBytes(new string('x', 300));
        var received = 0;
        var done = new TaskCompletionSource();
        await consumeChannel.BasicQosAsync(0, 200, false);
        var consumer = new AsyncEventingBasicConsumer(consumeChannel);
        consumer.ReceivedAsync += async (_, e) =>
        {
            await consumeChannel.BasicAckAsync(e.DeliveryTag, false);
            if (Interlocked.Increment(ref received) == Messages) done.TrySetResult();
        };
        var watch = Stopwatch.StartNew();
        await consumeChannel.BasicConsumeAsync(queue, autoAck: false, consumer);
        var props = new BasicProperties { Persistent = true };
        for (var i = 0; i < Messages; i++)
            await publishChannel.BasicPublishAsync("", queue, false, props, body);
        await done.Task.WaitAsync(TimeSpan.FromMinutes(2));
        var rate = Messages / watch.Elapsed.TotalSeconds;
        await publishChannel.QueueDeleteAsync(queue); // quorum queues cannot be auto-delete
        return rate;
    }
}
