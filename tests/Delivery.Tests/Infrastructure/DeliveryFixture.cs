using System.Security.Cryptography;
using Crm.Contracts.Contacts;
using Crm.Delivery.V1;
using Crm.Fakes.Smtp;
using Crm.Fakes.Twilio;
using Crm.Fakes.Kakao;
using Crm.TestSupport;
using Dapper;
using Grpc.Core;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using StackExchange.Redis;

namespace Crm.Delivery.Tests.Infrastructure;

/// <summary>
/// A Delivery service of its own: database, RabbitMQ virtual host, Redis key prefix, loopback Twilio
/// and SMTP fakes, and a bus to publish Contacts' events the way Contacts would.
/// </summary>
public sealed class DeliveryFixture : IAsyncLifetime
{
    private readonly string _database = TestServers.UniqueName("delivery_test");
    private readonly string _vhost = TestServers.UniqueName("delivery-test");
    private readonly List<ServiceHost> _hosts = [];
    private IBusControl? _bus;

    public string RedisPrefix { get; } = $"test-{Guid.NewGuid():N}:";
    public string SecretKey { get; } = Convert.ToBase64String(RandomNumberGenerator.GetBytes(32));
    public string TrackingKey { get; } = Convert.ToBase64String(RandomNumberGenerator.GetBytes(32));
    public string ConnectionString { get; private set; } = "";
    public string RabbitMqUri { get; private set; } = "";
    public ShiftedClock Clock { get; } = new();
    public FakeTwilioServer Twilio { get; } = new();
    public FakeSmtpServer Smtp { get; } = new();
    public Crm.Fakes.Sns.FakeSnsServer Sns { get; } = new();

    /// <summary>Where tracking and unsubscribe links point (Delivery:Tracking:BaseUrl); tests call the same paths on the host.</summary>
    public const string TrackingBaseUrl = "https://t.crm.test";
    public FakeKakaoServer Kakao { get; } = new();
    public ConnectionMultiplexer Redis { get; private set; } = null!;
    public ServiceHost Host => _hosts[0];
    public DeliveryService.DeliveryServiceClient Client => new(Host.Channel);

    public static string NewTenant() => "t-" + Guid.NewGuid().ToString("N")[..12];

    public CallOptions As(string tenant) => Host.As(tenant);

    public async Task InitializeAsync()
    {
        ConnectionString = await TestServers.CreateDatabaseAsync(_database);
        RabbitMqUri = await TestServers.CreateVirtualHostAsync(_vhost);
        Redis = await ConnectionMultiplexer.ConnectAsync(TestServers.Redis);
        await Twilio.StartAsync();
        await Smtp.StartAsync();
        await Sns.StartAsync();
        await Kakao.StartAsync();
        _hosts.Add(await StartHostAsync());
        _bus = Bus.Factory.CreateUsingRabbitMq(cfg => cfg.Host(new Uri(RabbitMqUri)));
        await _bus.StartAsync();
    }

    /// <summary>Another replica on the same database, queue and Redis (competing consumers).</summary>
    /// <param name="overrides">Settings that differ from the fixture's (e.g. an operator setting under test).</param>
    public async Task<ServiceHost> StartHostAsync(IReadOnlyDictionary<string, string?>? overrides = null)
    {
        var settings = new Dictionary<string, string?>
        {
            ["ConnectionStrings:Postgres"] = ConnectionString,
            ["ConnectionStrings:RabbitMq"] = RabbitMqUri,
            ["ConnectionStrings:Redis"] = TestServers.Redis,
            ["Delivery:SecretKey"] = SecretKey,
            ["Delivery:RedisKeyPrefix"] = RedisPrefix,
            ["Delivery:DeferredPollInterval"] = "00:00:00.100",
            ["Delivery:AllowNoopProvider"] = "true",
            ["Delivery:AllowPrivateProviderAddresses"] = "true", // the Twilio and SMTP fakes are on loopback
            ["Delivery:Retry:BaseDelay"] = "00:00:00.020",
            ["Delivery:Retry:MaxDelay"] = "00:00:00.200",
            ["Delivery:Retry:RequestTimeout"] = "00:00:02",
            ["Outbox:PollInterval"] = "00:00:00.200",
            // Customer webhooks: the retry schedule in fractions of a second (four attempts in all), a quick poll.
            ["Delivery:Webhooks:PollInterval"] = "00:00:00.050",
            ["Delivery:Webhooks:RetrySchedule:0"] = "00:00:00.200",
            ["Delivery:Webhooks:RetrySchedule:1"] = "00:00:00.400",
            ["Delivery:Webhooks:RetrySchedule:2"] = "00:00:00.800",
            ["Delivery:Webhooks:RequestTimeout"] = "00:00:05",
            ["Delivery:Tracking:BaseUrl"] = TrackingBaseUrl,
            ["Delivery:Tracking:SigningKey"] = TrackingKey,
            ["Delivery:Sns:CertificateHosts:0"] = Sns.Authority, // the loopback SNS fake serves its signing certificate
        };
        foreach (var (key, value) in overrides ?? new Dictionary<string, string?>()) settings[key] = value;
        var host = await ServiceHost.StartAsync(
            (args, configure) => DeliveryModule.Build(args, builder =>
            {
                configure(builder);
                builder.Services.AddSingleton<TimeProvider>(Clock);
                // The SNS fake's certificate is its own: trusted by thumbprint, as an operator would pin a private CA.
                // (PostConfigure: after the service's own handler, which it replaces.)
                builder.Services.PostConfigure<Microsoft.Extensions.Http.HttpClientFactoryOptions>(
                    Crm.Delivery.Channels.Email.SnsNotifications.HttpClientName,
                    o => o.HttpMessageHandlerBuilderActions.Add(b => b.PrimaryHandler = new SocketsHttpHandler
                    {
                        SslOptions = { RemoteCertificateValidationCallback = (_, cert, _, _) => cert?.GetCertHashString() == Sns.Certificate.Thumbprint },
                    }));
            }),
            settings);
        if (_hosts.Count > 0) _hosts.Add(host);
        return host;
    }

    /// <summary>Sets up a tenant: an SMS account on the Twilio fake, an SMTP account, a KakaoTalk account on the NHN fake, the Korean sender profile.</summary>
    public async Task<string> NewWorkspaceAsync(double smsPerSecond = 1000, params FrequencyCapRule[] rules)
    {
        var tenant = NewTenant();
        var auth = As(tenant);
        var sms = new ProviderAccount
        {
            AccountId = "twilio-main", Kind = ProviderKind.Twilio, Channel = V1.Channel.Sms, IsDefault = true, MessagesPerSecond = smsPerSecond,
        };
        sms.Settings.Add("account_sid", Twilio.AccountSid);
        sms.Settings.Add("from", "+15005550006");
        sms.Settings.Add("base_url", Twilio.BaseUri.ToString().TrimEnd('/'));
        sms.Settings.Add("status_callback_url", Crm.Delivery.Channels.Sms.TwilioStatusCallbacks.UrlFor(Host.HttpAddress.ToString(), tenant, "twilio-main"));
        await Client.UpsertProviderAccountAsync(new UpsertProviderAccountRequest { Account = sms, Secret = Twilio.AuthToken }, auth);
        var email = new ProviderAccount
        {
            AccountId = "smtp-main", Kind = ProviderKind.Smtp, Channel = V1.Channel.Email, IsDefault = true, MessagesPerSecond = 1000,
        };
        email.Settings.Add("host", Smtp.Host);
        email.Settings.Add("port", Smtp.Port.ToString(System.Globalization.CultureInfo.InvariantCulture));
        email.Settings.Add("from", "shop@example.kr");
        email.Settings.Add("from_name", "데모 상점");
        await Client.UpsertProviderAccountAsync(new UpsertProviderAccountRequest { Account = email }, auth);
        var kakao = new ProviderAccount
        {
            AccountId = "kakao-main", Kind = ProviderKind.NhnKakao, Channel = V1.Channel.Kakao, IsDefault = true, MessagesPerSecond = 1000,
        };
        kakao.Settings.Add("app_key", Kakao.AppKey);
        kakao.Settings.Add("sender_key", Kakao.SenderKey);
        kakao.Settings.Add("base_url", Kakao.BaseUri.ToString());
        await Client.UpsertProviderAccountAsync(new UpsertProviderAccountRequest { Account = kakao, Secret = Kakao.SecretKey }, auth);
        await Client.SetSenderProfileAsync(new SetSenderProfileRequest
        {
            Profile = new SenderProfile
            {
                SenderName = "데모상점", OptOutNumber = "080-123-4567",
                UnsubscribeUrl = "https://shop.example.kr/unsubscribe/{message_id}", UnsubscribeMailto = "unsubscribe@shop.example.kr",
            },
        }, auth);
        if (rules.Length > 0) await Client.SetFrequencyCapRulesAsync(new SetFrequencyCapRulesRequest { Rules = { rules } }, auth);
        return tenant;
    }

    /// <summary>Publishes a contact and its consents as the Contacts service would, and waits for the projection.</summary>
    public async Task<Guid> NewContactAsync(string tenant, string? phone = "+821012345678", string? email = "minjun@example.kr",
        string timeZone = "Asia/Seoul", params (string Channel, string Purpose, string Status)[] consents)
    {
        var contactId = Guid.NewGuid();
        var now = DateTimeOffset.UtcNow.AddMinutes(-1);
        await _bus!.Publish(new ContactUpserted(tenant, contactId, "ext-" + contactId.ToString("N")[..8], email, phone, "ko-KR", timeZone, [], "{}", false, now));
        foreach (var (channel, purpose, status) in consents)
            await _bus.Publish(new ConsentChanged(tenant, contactId, channel, purpose, status, "form", now, now));
        await WaitUntilAsync($"SELECT count(*) FROM contact_channels WHERE tenant_id = '{tenant}' AND contact_id = '{contactId}'", 1);
        await WaitUntilAsync($"SELECT count(*) FROM contact_consents WHERE tenant_id = '{tenant}' AND contact_id = '{contactId}'", consents.Length);
        return contactId;
    }

    public Task PublishAsync<T>(T message) where T : class => _bus!.Publish(message);

    /// <summary>Publishes with a message id of the test's choosing (the same id again is a broker redelivery).</summary>
    public Task PublishAsync<T>(T message, Guid messageId) where T : class => _bus!.Publish(message, ctx => ctx.MessageId = messageId);

    public async Task WaitUntilAsync(string countSql, long atLeast, int seconds = 30)
    {
        await using var conn = new NpgsqlConnection(ConnectionString);
        var deadline = DateTime.UtcNow.AddSeconds(seconds);
        while (await conn.ExecuteScalarAsync<long>(countSql) < atLeast)
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"Still fewer than {atLeast}: {countSql}");
            await Task.Delay(50);
        }
    }

    /// <summary>What Redis would look like after a restart: every key of this service gone.</summary>
    public async Task ForgetRedisAsync()
    {
        var server = Redis.GetServers()[0];
        var db = Redis.GetDatabase();
        await foreach (var key in server.KeysAsync(pattern: RedisPrefix + "*", pageSize: 1000)) await db.KeyDeleteAsync(key);
    }

    public async Task DisposeAsync()
    {
        if (_bus is not null) await _bus.StopAsync();
        foreach (var h in _hosts) await h.DisposeAsync();
        await ForgetRedisAsync();
        Redis.Dispose();
        await Twilio.DisposeAsync();
        await Smtp.DisposeAsync();
        await Sns.DisposeAsync();
        await Kakao.DisposeAsync();
        await TestServers.DropDatabaseAsync(_database);
        await TestServers.DeleteVirtualHostAsync(_vhost);
    }
}

[CollectionDefinition(Name)]
public sealed class DeliveryCollection : ICollectionFixture<DeliveryFixture>
{
    public const string Name = "delivery";
}
