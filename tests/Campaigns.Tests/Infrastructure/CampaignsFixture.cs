extern alias delivery;
extern alias segmentation;

using System.Globalization;
using System.Security.Cryptography;
using Crm.BuildingBlocks.Tenancy;
using Crm.Campaigns.V1;
using Crm.Contracts.Contacts;
using Crm.Delivery.V1;
using Crm.Fakes.Smtp;
using Crm.Segmentation.V1;
using Crm.TestSupport;
using Dapper;
using Grpc.Core;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;

namespace Crm.Campaigns.Tests.Infrastructure;

/// <summary>
/// The platform a campaign needs, on one RabbitMQ virtual host: a Campaigns service (its own database), a
/// real Segmentation (its own database) that the audience is read from, a real Delivery (its own database,
/// Redis prefix) sending email to a loopback SMTP fake, and a bus that publishes Contacts' events the way
/// Contacts would (all three project them). Campaigns calls Segmentation and Delivery with its own workload
/// key, which they list with an allow-list of scopes, as in production.
/// </summary>
public sealed class CampaignsFixture : IAsyncLifetime
{
    private readonly string _database = TestServers.UniqueName("campaigns_test");
    private readonly string _segmentationDatabase = TestServers.UniqueName("camp_seg_test");
    private readonly string _deliveryDatabase = TestServers.UniqueName("camp_del_test");
    private readonly string _vhost = TestServers.UniqueName("campaigns-test");
    private IBusControl? _bus;

    /// <summary>Campaigns' own key pair (Tenancy:WorkloadKey); the peers accept it for these scopes only.</summary>
    public TestTokenKeys WorkloadKeys { get; } = TestTokenKeys.Generate("campaigns-workload-test");

    public static readonly string[] SegmentationAllows = [Scope.SegmentsRead];
    public static readonly string[] DeliveryAllows = [Scope.DeliverySend, Scope.DeliveryRead];

    public string ConnectionString { get; private set; } = "";
    public string SegmentationConnectionString { get; private set; } = "";
    public string DeliveryConnectionString { get; private set; } = "";
    public string RabbitMqUri { get; private set; } = "";
    public string RedisPrefix { get; } = $"test-{Guid.NewGuid():N}:";
    public ShiftedClock Clock { get; } = new();
    public FakeSmtpServer Smtp { get; } = new();
    public ServiceHost Host { get; private set; } = null!;
    public ServiceHost Segmentation { get; private set; } = null!;
    public ServiceHost Delivery { get; private set; } = null!;
    public CampaignsService.CampaignsServiceClient Client => new(Host.Channel);
    public SegmentationService.SegmentationServiceClient Segments => new(Segmentation.Channel);
    public DeliveryService.DeliveryServiceClient DeliveryClient => new(Delivery.Channel);

    public static string NewTenant() => "t-" + Guid.NewGuid().ToString("N")[..12];

    public CallOptions As(string tenant, params string[] scopes) => Host.As(tenant, scopes);

    public async Task InitializeAsync()
    {
        ConnectionString = await TestServers.CreateDatabaseAsync(_database);
        SegmentationConnectionString = await TestServers.CreateDatabaseAsync(_segmentationDatabase);
        DeliveryConnectionString = await TestServers.CreateDatabaseAsync(_deliveryDatabase);
        RabbitMqUri = await TestServers.CreateVirtualHostAsync(_vhost);
        await Smtp.StartAsync();
        _bus = Bus.Factory.CreateUsingRabbitMq(cfg => cfg.Host(new Uri(RabbitMqUri)));
        await _bus.StartAsync();
        Segmentation = await ServiceHost.StartAsync(segmentation::Crm.Segmentation.SegmentationModule.Build, WithPeerKeys(new()
        {
            ["ConnectionStrings:Postgres"] = SegmentationConnectionString,
            ["ConnectionStrings:RabbitMq"] = RabbitMqUri,
            ["Outbox:PollInterval"] = "00:00:00.050",
            ["Segmentation:RefreshInterval"] = "00:00:00.050",
        }, SegmentationAllows));
        Delivery = await ServiceHost.StartAsync(delivery::Crm.Delivery.DeliveryModule.Build, WithPeerKeys(new()
        {
            ["ConnectionStrings:Postgres"] = DeliveryConnectionString,
            ["ConnectionStrings:RabbitMq"] = RabbitMqUri,
            ["ConnectionStrings:Redis"] = TestServers.Redis,
            ["Delivery:SecretKey"] = Convert.ToBase64String(RandomNumberGenerator.GetBytes(32)),
            ["Delivery:RedisKeyPrefix"] = RedisPrefix,
            ["Delivery:DeferredPollInterval"] = "00:00:00.100",
            ["Delivery:AllowPrivateProviderAddresses"] = "true", // the SMTP fake is on loopback
            ["Outbox:PollInterval"] = "00:00:00.050",
        }, DeliveryAllows));
        Host = await StartHostAsync();
    }

    /// <summary>The test issuer's key (any scope) and Campaigns' workload key with its allow-list.</summary>
    private Dictionary<string, string?> WithPeerKeys(Dictionary<string, string?> settings, string[] allowed)
    {
        foreach (var (k, v) in TestTokenKeys.PublicKeySettings(TestTokenKeys.Default, WorkloadKeys)) settings[k] = v;
        for (var i = 0; i < allowed.Length; i++) settings[$"Tenancy:PublicKeys:1:Scopes:{i}"] = allowed[i];
        return settings;
    }

    public Task<ServiceHost> StartHostAsync(IReadOnlyDictionary<string, string?>? overrides = null)
    {
        var settings = new Dictionary<string, string?>(CampaignsSettings());
        foreach (var (key, value) in overrides ?? new Dictionary<string, string?>()) settings[key] = value;
        return ServiceHost.StartAsync(
            (args, configure) => CampaignsModule.Build(args, builder =>
            {
                configure(builder);
                builder.Services.AddSingleton<TimeProvider>(Clock);
            }),
            settings);
    }

    /// <summary>Campaigns' settings (also for a Campaigns started as a process).</summary>
    public Dictionary<string, string?> CampaignsSettings() => new()
    {
        ["ConnectionStrings:Postgres"] = ConnectionString,
        ["ConnectionStrings:RabbitMq"] = RabbitMqUri,
        ["ConnectionStrings:Segmentation"] = Segmentation.GrpcAddress.ToString(),
        ["ConnectionStrings:Delivery"] = Delivery.GrpcAddress.ToString(),
        ["Tenancy:WorkloadKey"] = WorkloadKeys.PrivatePem,
        ["Tenancy:WorkloadKeyId"] = WorkloadKeys.KeyId,
        ["Outbox:PollInterval"] = "00:00:00.050",
        ["Campaigns:RunPollInterval"] = "00:00:00.050",
        ["Campaigns:FanoutPageSize"] = "10",
        ["Campaigns:MessagesPerCommand"] = "10",
        ["Campaigns:RunLease"] = "00:00:02",
    };

    /// <summary>A workspace whose email goes to the SMTP fake, under Korean rules with a sender profile.</summary>
    public async Task<string> NewWorkspaceAsync()
    {
        var tenant = NewTenant();
        var auth = Delivery.As(tenant);
        var email = new ProviderAccount { AccountId = "smtp-main", Kind = ProviderKind.Smtp, Channel = Crm.Delivery.V1.Channel.Email, IsDefault = true, MessagesPerSecond = 5000 };
        email.Settings.Add("host", Smtp.Host);
        email.Settings.Add("port", Smtp.Port.ToString(CultureInfo.InvariantCulture));
        email.Settings.Add("from", "shop@example.kr");
        await DeliveryClient.UpsertProviderAccountAsync(new UpsertProviderAccountRequest { Account = email }, auth);
        await DeliveryClient.SetSenderProfileAsync(new SetSenderProfileRequest
        {
            Profile = new SenderProfile { SenderName = "데모상점", OptOutNumber = "080-123-4567", UnsubscribeUrl = "https://shop.example.kr/u/{message_id}" },
        }, auth);
        return tenant;
    }

    /// <summary>Contacts as Contacts would publish them (tags for the segments, email opted in day and night); waits until all three services hold them.</summary>
    public async Task<Guid[]> NewContactsAsync(string tenant, int count, string[] tags, string? locale = "ko-KR", string attributesJson = "{}")
    {
        var ids = Enumerable.Range(0, count).Select(_ => Guid.NewGuid()).ToArray();
        var at = Clock.GetUtcNow().AddMinutes(-1);
        foreach (var id in ids)
        {
            await _bus!.Publish(new ContactUpserted(tenant, id, "ext-" + id.ToString("N")[..10], Address(id), null, locale, "Asia/Seoul", tags, attributesJson, false, at));
            await _bus.Publish(new ConsentChanged(tenant, id, "email", "marketing", "opted_in", "form", at, at));
            await _bus.Publish(new ConsentChanged(tenant, id, "email", "marketing_night", "opted_in", "form", at, at));
        }
        var args = new { tenant, ids };
        await WaitUntilAsync(ConnectionString, "SELECT count(*) FROM contacts WHERE tenant_id = @tenant AND contact_id = ANY(@ids)", args, count);
        await WaitUntilAsync(DeliveryConnectionString, "SELECT count(*) FROM contact_consents WHERE tenant_id = @tenant AND contact_id = ANY(@ids)", args, 2L * count);
        await WaitUntilAsync(SegmentationConnectionString, "SELECT count(*) FROM contacts WHERE tenant_id = @tenant AND contact_id = ANY(@ids)", args, count);
        return ids;
    }

    public static string Address(Guid contactId) => $"{contactId:N}@example.kr";

    /// <summary>A segment of the contacts with a tag, once Segmentation's membership holds <paramref name="members"/>.</summary>
    public async Task<string> TagSegmentAsync(string tenant, string tag, int members)
    {
        var rule = Google.Protobuf.JsonParser.Default.Parse<Rule>(
            """{"profile": {"field": "PROFILE_FIELD_TAGS", "op": "OPERATOR_EQUALS", "values": [{"stringValue": "@tag@"}]}}""".Replace("@tag@", tag, StringComparison.Ordinal));
        var segment = await Segments.CreateSegmentAsync(new CreateSegmentRequest { Segment = new Segment { Name = "tag " + tag, Rule = rule } }, Segmentation.As(tenant));
        await WaitUntilAsync(SegmentationConnectionString, "SELECT count(*) FROM segment_members WHERE tenant_id = @tenant AND segment_id = @id",
            new { tenant, id = Guid.Parse(segment.SegmentId) }, members);
        return segment.SegmentId;
    }

    /// <summary>Emails the SMTP fake received, by recipient address.</summary>
    public Dictionary<string, int> EmailsTo(IEnumerable<Guid> contacts)
    {
        var addresses = contacts.Select(Address).ToHashSet();
        return Smtp.Messages.SelectMany(m => m.Recipients).Where(addresses.Contains).GroupBy(a => a).ToDictionary(g => g.Key, g => g.Count());
    }

    /// <summary>Waits for the run to finish (every recipient has an outcome) and returns it.</summary>
    public async Task<CampaignRun> WaitFinishedAsync(string tenant, string campaignId, string runId, int seconds = 120)
    {
        var deadline = DateTime.UtcNow.AddSeconds(seconds);
        while (true)
        {
            var run = await Client.GetCampaignRunAsync(new GetCampaignRunRequest { CampaignId = campaignId, RunId = runId }, As(tenant));
            if (run.Status is RunStatus.Finished or RunStatus.Cancelled or RunStatus.Failed) return run;
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"Run {runId} is still {run.Status}: {run.Progress}");
            await Task.Delay(100);
        }
    }

    /// <summary>Publishes as Contacts, Segmentation or Delivery would.</summary>
    public Task PublishAsync<T>(T message) where T : class => _bus!.Publish(message);

    /// <summary>A query on a database as its owner (no row-level security), for assertions.</summary>
    public static async Task<T> QueryScalarAsync<T>(string connectionString, string sql, object? args = null)
    {
        await using var conn = new NpgsqlConnection(connectionString);
        return await conn.ExecuteScalarAsync<T>(sql, args) ?? default!;
    }

    public Task<T> QueryScalarAsync<T>(string sql, object? args = null) => QueryScalarAsync<T>(ConnectionString, sql, args);

    public static async Task WaitUntilAsync(string connectionString, string countSql, object? args, long atLeast, int seconds = 60)
    {
        await using var conn = new NpgsqlConnection(connectionString);
        var deadline = DateTime.UtcNow.AddSeconds(seconds);
        while (await conn.ExecuteScalarAsync<long>(countSql, args) < atLeast)
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"Still fewer than {atLeast}: {countSql}");
            await Task.Delay(50);
        }
    }

    public async Task DisposeAsync()
    {
        if (_bus is not null) await _bus.StopAsync();
        foreach (var host in new[] { Host, Delivery, Segmentation })
            if (host is not null) await host.DisposeAsync();
        await Smtp.DisposeAsync();
        foreach (var db in new[] { _database, _segmentationDatabase, _deliveryDatabase }) await TestServers.DropDatabaseAsync(db);
        await TestServers.DeleteVirtualHostAsync(_vhost);
    }
}

[CollectionDefinition(Name)]
public sealed class CampaignsCollection : ICollectionFixture<CampaignsFixture>
{
    public const string Name = "campaigns";
}
