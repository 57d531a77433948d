using System.Collections.Concurrent;
using System.Globalization;
using System.Security.Cryptography;
using Crm.Contracts.Contacts;
using Crm.Contracts.Delivery;
using Crm.Delivery.V1;
using Crm.Fakes.Twilio;
using Crm.TestSupport;
using Dapper;
using MassTransit;
using Npgsql;
using StackExchange.Redis;

namespace Crm.Faults.Tests.Infrastructure;

/// <summary>
/// The Delivery service run as a child process (so it can be SIGKILLed) on a database, Redis key prefix and
/// RabbitMQ (a virtual host of the shared node, or a private node) of its own, sending SMS to a loopback
/// Twilio fake that records every request; and the test's own bus, which publishes DeliverMessage commands
/// and Contacts' events and records the outcome events Delivery publishes.
/// </summary>
public sealed class DeliveryRig : IAsyncDisposable
{
    private readonly string _databaseName;
    private readonly string _logs = Path.Combine(Path.GetTempPath(), "crm-faults-" + Guid.NewGuid().ToString("N")[..8]);
    private readonly Dictionary<string, string?> _settings;
    private readonly string _redisPrefix = $"faults-{Guid.NewGuid():N}:";
    private IBusControl? _bus;
    private int _starts;

    private DeliveryRig(string rabbitMqUri, string databaseName, string connectionString, IDictionary<string, string?> overrides)
    {
        _databaseName = databaseName;
        RabbitMqUri = rabbitMqUri;
        ConnectionString = connectionString;
        _settings = new Dictionary<string, string?>
        {
            ["ConnectionStrings:Postgres"] = connectionString,
            ["ConnectionStrings:RabbitMq"] = rabbitMqUri,
            ["ConnectionStrings:Redis"] = TestServers.Redis,
            ["Delivery:SecretKey"] = Convert.ToBase64String(RandomNumberGenerator.GetBytes(32)),
            ["Delivery:RedisKeyPrefix"] = _redisPrefix,
            ["Delivery:AllowPrivateProviderAddresses"] = "true", // the Twilio fake is on loopback
            ["Delivery:DeferredPollInterval"] = "00:00:00.200",
            // A stopped worker's messages are taken up after this: short, so a test need not wait two minutes.
            ["Delivery:ClaimLease"] = "00:00:05",
            ["Delivery:StrandedCheckInterval"] = "00:00:00.500",
            ["Delivery:Retry:BaseDelay"] = "00:00:00.020",
            ["Delivery:Retry:MaxDelay"] = "00:00:00.200",
            ["Delivery:Retry:RequestTimeout"] = "00:00:03",
            ["Outbox:PollInterval"] = "00:00:00.200",
            ["Outbox:PublishTimeout"] = "00:00:10",
            // Started many times a test: tiered compilation (off in the service's build, for steady throughput)
            // starts it in about half the time.
            ["DOTNET_TieredCompilation"] = "1",
        };
        foreach (var (k, v) in overrides) _settings[k] = v;
        Directory.CreateDirectory(_logs);
    }

    public string RabbitMqUri { get; }
    public string ConnectionString { get; }
    public FakeTwilioServer Twilio { get; } = new();
    public ServiceProcess Delivery { get; private set; } = null!;
    public OutcomeLog Outcomes { get; } = new();
    public int PublishRetries => _publishRetries;
    private int _publishRetries;

    /// <param name="rabbitMqUri">An AMQP URI with its virtual host, not shared with other tests.</param>
    public static async Task<DeliveryRig> StartAsync(string rabbitMqUri, IDictionary<string, string?>? settings = null)
    {
        var database = TestServers.UniqueName("faults_test");
        var rig = new DeliveryRig(rabbitMqUri, database, await TestServers.CreateDatabaseAsync(database), settings ?? new Dictionary<string, string?>());
        await rig.Twilio.StartAsync();
        // The outcome queue is bound before Delivery publishes anything.
        rig._bus = Bus.Factory.CreateUsingRabbitMq(cfg =>
        {
            cfg.Host(new Uri(rabbitMqUri));
            cfg.ReceiveEndpoint("faults-outcomes", e =>
            {
                e.Handler<MessagesSent>(c => rig.Outcomes.Record(c.MessageId, "sent", c.Message.Messages.Select(m => m.MessageId)));
                e.Handler<MessagesFailed>(c => rig.Outcomes.Record(c.MessageId, "failed", c.Message.Messages.Select(m => m.MessageId)));
                e.Handler<MessagesSuppressed>(c => rig.Outcomes.Record(c.MessageId, "suppressed", c.Message.Messages.Select(m => m.MessageId)));
            });
        });
        await rig._bus.StartAsync();
        await rig.StartDeliveryAsync();
        return rig;
    }

    /// <summary>Starts Delivery (again, on the same ports after the first time) and waits until it is ready.</summary>
    public async Task StartDeliveryAsync(IDictionary<string, string?>? overrides = null)
    {
        await LaunchDeliveryAsync(overrides);
        await Delivery.WaitUntilReadyAsync(TimeSpan.FromSeconds(90));
    }

    /// <summary>Starts Delivery (again, on the same ports after the first time) without waiting for it.</summary>
    public async Task LaunchDeliveryAsync(IDictionary<string, string?>? overrides = null)
    {
        var settings = new Dictionary<string, string?>(_settings);
        foreach (var (k, v) in overrides ?? new Dictionary<string, string?>()) settings[k] = v;
        var previous = _starts++ == 0 ? null : Delivery;
        if (previous is not null) await previous.DisposeAsync();
        var log = Path.Combine(_logs, "delivery.log");
        _logStart = File.Exists(log) ? new FileInfo(log).Length : 0;
        Delivery = ServiceProcess.Launch(ServiceProcess.ServiceDll("Delivery", "Crm.Delivery"), settings,
            Path.Combine(_logs, "delivery.log"), previous?.GrpcPort ?? 0, previous?.HttpPort ?? 0);
    }

    public DeliveryService.DeliveryServiceClient Client => new(Delivery.Channel);

    /// <summary>Where the running Delivery's output begins in the log file (earlier runs' lines come before).</summary>
    private long _logStart;

    /// <summary>Waits until the running Delivery process has written <paramref name="text"/> to its log.</summary>
    public async Task WaitForDeliveryLogAsync(string text, CancellationToken ct)
    {
        var log = Path.Combine(_logs, "delivery.log");
        while (true)
        {
            await using (var file = new FileStream(log, FileMode.Open, FileAccess.Read, FileShare.ReadWrite))
            {
                file.Seek(_logStart, SeekOrigin.Begin);
                if ((await new StreamReader(file).ReadToEndAsync(ct)).Contains(text, StringComparison.Ordinal)) return;
            }
            if (Delivery.HasExited) throw new InvalidOperationException($"Delivery exited before it logged '{text}':\n{DeliveryLog}");
            await Task.Delay(50, ct);
        }
    }

    /// <summary>
    /// Publishes an outcome event of no message from the test's bus and waits until the test's consumer has it:
    /// whatever the broker had confirmed before (queued ahead of it) has then been received.
    /// </summary>
    public async Task DrainOutcomesAsync(CancellationToken ct)
    {
        var sentinel = NewId.NextGuid();
        await _bus!.Publish(new MessagesSent("faults-sentinel", []), c => c.MessageId = sentinel, ct);
        await Outcomes.WaitForEventAsync(sentinel, ct);
    }

    /// <summary>The end of Delivery's log, without the reconnection attempts of a broker outage.</summary>
    public string DeliveryLog => string.Join('\n', ServiceProcess.Tail(Path.Combine(_logs, "delivery.log"), 400).Split('\n')
        .Where(l => !l.Contains("Connection Failed", StringComparison.Ordinal)).TakeLast(40));

    /// <summary>A workspace whose default SMS account is the Twilio fake.</summary>
    public async Task<string> NewWorkspaceAsync(double smsPerSecond = 10_000)
    {
        var tenant = "t-" + Guid.NewGuid().ToString("N")[..12];
        var sms = new ProviderAccount
        {
            AccountId = "twilio-main", Kind = ProviderKind.Twilio, Channel = Channel.Sms, IsDefault = true, MessagesPerSecond = smsPerSecond,
        };
        sms.Settings.Add("account_sid", Twilio.AccountSid);
        sms.Settings.Add("from", "+15005550006");
        sms.Settings.Add("base_url", Twilio.BaseUri.ToString().TrimEnd('/'));
        await Client.UpsertProviderAccountAsync(new UpsertProviderAccountRequest { Account = sms, Secret = Twilio.AuthToken }, Delivery.As(tenant));
        return tenant;
    }

    /// <summary>Contacts with a phone each, published as Contacts publishes them; returns once Delivery's projection has them all.</summary>
    public async Task<Guid[]> NewContactsAsync(string tenant, int count, CancellationToken ct)
    {
        var at = DateTimeOffset.UtcNow.AddMinutes(-1);
        var contacts = Enumerable.Range(0, count).Select(_ => Guid.NewGuid()).ToArray();
        for (var i = 0; i < count; i++)
        {
            var phone = "+8210" + (20_000_000 + i).ToString(CultureInfo.InvariantCulture);
            await PublishReliablyAsync(new ContactUpserted(tenant, contacts[i], $"ext-{i}", null, phone, "ko-KR", "Asia/Seoul", [], "{}", false, at), ct);
        }
        await WaitUntilAsync("SELECT count(*) FROM contact_channels WHERE tenant_id = @tenant", new { tenant }, count, ct);
        return contacts;
    }

    /// <summary>
    /// Transactional SMS, <paramref name="perCommand"/> to a command, each to one of the contacts in turn;
    /// each body carries its idempotency key, which is how the provider's requests are counted per message.
    /// </summary>
    public static IReadOnlyList<DeliverMessage> Commands(string tenant, Guid[] contacts, int total, int perCommand, string run) =>
        Enumerable.Range(0, total)
            .Select(i => new DeliveryRequest($"{run}-{i:D5}", contacts[i % contacts.Length], "sms", "transactional", TextBody: BodyOf($"{run}-{i:D5}")))
            .Chunk(perCommand).Select(chunk => new DeliverMessage(tenant, chunk)).ToList();

    public static string BodyOf(string key) => $"[fault test] {key}";

    /// <summary>
    /// Publishes with publisher confirms, again and again until the broker confirms: a publish whose confirm was
    /// lost (the broker went away) may have arrived, so the command may arrive twice; idempotency keys make that harmless.
    /// </summary>
    public async Task PublishReliablyAsync<T>(T message, CancellationToken ct) where T : class
    {
        while (true)
        {
            try
            {
                using var attempt = CancellationTokenSource.CreateLinkedTokenSource(ct);
                attempt.CancelAfter(TimeSpan.FromSeconds(10));
                await _bus!.Publish(message, attempt.Token);
                return;
            }
            catch (Exception) when (!ct.IsCancellationRequested)
            {
                Interlocked.Increment(ref _publishRetries);
                await Task.Delay(200, ct);
            }
        }
    }

    /// <summary>Provider calls per idempotency key, read from the bodies the Twilio fake received (every request, answered or not).</summary>
    public Dictionary<string, int> ProviderCallsByKey(string run) =>
        Twilio.Requests.Where(r => r.Method == "POST" && r.Body is { } b && b.StartsWith(BodyOf(run), StringComparison.Ordinal))
            .GroupBy(r => r.Body![BodyOf("").Length..]).ToDictionary(g => g.Key, g => g.Count(), StringComparer.Ordinal);

    public int ProviderCalls => Twilio.Requests.Count;

    public sealed record StoredMessage(string IdempotencyKey, Guid MessageId, string Status, string Reason);

    public async Task<List<StoredMessage>> MessagesAsync(string tenant)
    {
        await using var conn = new NpgsqlConnection(ConnectionString);
        return (await conn.QueryAsync<StoredMessage>(
            "SELECT idempotency_key AS IdempotencyKey, message_id AS MessageId, status, reason FROM messages WHERE tenant_id = @tenant", new { tenant })).AsList();
    }

    /// <summary>How many messages are in each status (for a test's report when it runs out of time).</summary>
    public async Task<string> StatusesAsync()
    {
        await using var conn = new NpgsqlConnection(ConnectionString);
        var rows = await conn.QueryAsync<(string Status, long Count)>("SELECT status, count(*) FROM messages GROUP BY status ORDER BY status");
        var unpublished = await conn.ExecuteScalarAsync<long>("SELECT count(*) FROM outbox_messages WHERE published_at IS NULL");
        return string.Join(", ", rows.Select(r => $"{r.Count} {r.Status}")) +
            $"; {unpublished} outbox rows unpublished; {Outcomes.MessagesAnnounced} messages announced in {Outcomes.Events} events";
    }

    /// <summary>
    /// Waits until every one of the tenant's <paramref name="total"/> messages has an outcome stored and announced
    /// on the bus; out of time, reports where things stand and Delivery's last words before rethrowing.
    /// </summary>
    public async Task WaitForEveryOutcomeAsync(string tenant, int total, Action<string> report, CancellationToken ct)
    {
        try
        {
            await WaitUntilAsync("SELECT count(*) FROM messages WHERE tenant_id = @tenant AND status IN ('sent', 'failed', 'suppressed')",
                new { tenant }, total, ct);
            await Outcomes.WaitForAsync((await MessagesAsync(tenant)).Select(m => m.MessageId), ct);
        }
        catch (OperationCanceledException)
        {
            report($"out of time; {await StatusesAsync()}\n{DeliveryLog}");
            throw;
        }
    }

    public async Task<long> CountAsync(string sql, object? args = null)
    {
        await using var conn = new NpgsqlConnection(ConnectionString);
        return await conn.ExecuteScalarAsync<long>(sql, args);
    }

    public async Task WaitUntilAsync(string countSql, object? args, long atLeast, CancellationToken ct)
    {
        while (await CountAsync(countSql, args) < atLeast) await Task.Delay(100, ct);
    }

    public async ValueTask DisposeAsync()
    {
        if (Delivery is not null) await Delivery.DisposeAsync();
        if (_bus is not null)
        {
            using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            try { await _bus.StopAsync(stop.Token); } catch (OperationCanceledException) { }
        }
        await Twilio.DisposeAsync();
        using (var redis = await ConnectionMultiplexer.ConnectAsync(TestServers.Redis))
        {
            var db = redis.GetDatabase();
            await foreach (var key in redis.GetServers()[0].KeysAsync(pattern: _redisPrefix + "*", pageSize: 1000)) await db.KeyDeleteAsync(key);
        }
        await TestServers.DropDatabaseAsync(_databaseName);
        try { Directory.Delete(_logs, recursive: true); } catch (IOException) { }
    }
}

/// <summary>The outcome events the test's bus received: per message, the outcomes announced; per event, how often it arrived.</summary>
public sealed class OutcomeLog
{
    private readonly ConcurrentDictionary<Guid, ConcurrentDictionary<string, int>> _byMessage = new();
    private readonly ConcurrentDictionary<Guid, int> _deliveries = new();

    public Task Record(Guid? eventId, string kind, IEnumerable<Guid> messageIds)
    {
        if (eventId is { } sentinel && !messageIds.Any()) _sentinels.TryAdd(sentinel, 0);
        if (eventId is { } id) _deliveries.AddOrUpdate(id, 1, (_, n) => n + 1);
        foreach (var m in messageIds) _byMessage.GetOrAdd(m, _ => new()).AddOrUpdate(kind, 1, (_, n) => n + 1);
        return Task.CompletedTask;
    }

    public int MessagesAnnounced => _byMessage.Count;

    /// <summary>The kinds of outcome announced for a message (a redelivered event repeats a kind, never adds one).</summary>
    public IReadOnlyCollection<string> KindsOf(Guid messageId) => _byMessage.TryGetValue(messageId, out var k) ? [.. k.Keys] : [];

    /// <summary>Events that arrived more than once (the bus is at-least-once; consumers dedupe on the event id).</summary>
    public int RedeliveredEvents => _deliveries.Values.Count(n => n > 1);

    public int Events => _deliveries.Count - _sentinels.Count;

    /// <summary>How many times each outcome event arrived, by event id (the sentinels of <see cref="DeliveryRig.DrainOutcomesAsync"/> left out).</summary>
    public IReadOnlyDictionary<Guid, int> Deliveries => _deliveries.Where(d => !_sentinels.ContainsKey(d.Key)).ToDictionary(d => d.Key, d => d.Value);

    private readonly ConcurrentDictionary<Guid, byte> _sentinels = new();

    public async Task WaitForEventAsync(Guid eventId, CancellationToken ct)
    {
        while (!_deliveries.ContainsKey(eventId)) await Task.Delay(20, ct);
    }

    public async Task WaitForAsync(IEnumerable<Guid> messageIds, CancellationToken ct)
    {
        var all = messageIds.ToList();
        while (all.Any(m => !_byMessage.ContainsKey(m))) await Task.Delay(100, ct);
    }
}
