extern alias contacts;

using Crm.Segmentation.V1;
using Crm.TestSupport;
using Dapper;
using Grpc.Core;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;

namespace Crm.Segmentation.Tests.Infrastructure;

/// <summary>
/// A Segmentation service of its own (database, RabbitMQ virtual host), a Contacts service on the same
/// virtual host when a test needs one (<see cref="StartContactsAsync"/>: its own database), and a bus that
/// publishes events the way Contacts and Delivery would and records what Segmentation publishes.
/// </summary>
public sealed class SegmentationFixture : IAsyncLifetime
{
    private readonly string _database = TestServers.UniqueName("segmentation_test");
    private readonly string _contactsDatabase = TestServers.UniqueName("seg_contacts_test");
    private readonly string _vhost = TestServers.UniqueName("segmentation-test");
    private IBusControl? _bus;
    private ServiceHost? _contacts;

    public string ConnectionString { get; private set; } = "";
    public string RabbitMqUri { get; private set; } = "";
    public ShiftedClock Clock { get; } = new();
    public ServiceHost Host { get; private set; } = null!;
    public SegmentationService.SegmentationServiceClient Client => new(Host.Channel);

    /// <summary>Every event Segmentation published, as the bus received it (SegmentMembershipChanged, LeadQualified, TierChanged).</summary>
    public PublishedEvents Published { get; } = new();

    public static string NewTenant() => "t-" + Guid.NewGuid().ToString("N")[..12];

    public CallOptions As(string tenant, params string[] scopes) => Host.As(tenant, scopes);

    public async Task InitializeAsync()
    {
        ConnectionString = await TestServers.CreateDatabaseAsync(_database);
        RabbitMqUri = await TestServers.CreateVirtualHostAsync(_vhost);
        _bus = Bus.Factory.CreateUsingRabbitMq(cfg =>
        {
            cfg.Host(new Uri(RabbitMqUri));
            cfg.ReceiveEndpoint("segmentation-test-observer", e =>
            {
                e.Handler<Crm.Contracts.Segmentation.SegmentMembershipChanged>(ctx => { Published.Add(ctx.Message); return Task.CompletedTask; });
                e.Handler<Crm.Contracts.Segmentation.LeadQualified>(ctx => { Published.Add(ctx.Message); return Task.CompletedTask; });
                e.Handler<Crm.Contracts.Segmentation.TierChanged>(ctx => { Published.Add(ctx.Message); return Task.CompletedTask; });
            });
        });
        await _bus.StartAsync();
        Host = await StartHostAsync();
    }

    public Task<ServiceHost> StartHostAsync(IReadOnlyDictionary<string, string?>? overrides = null)
    {
        var settings = new Dictionary<string, string?>
        {
            ["ConnectionStrings:Postgres"] = ConnectionString,
            ["ConnectionStrings:RabbitMq"] = RabbitMqUri,
            ["Outbox:PollInterval"] = "00:00:00.050",
            ["Segmentation:RefreshInterval"] = "00:00:00.050",
            ["Segmentation:RfmInterval"] = "00:00:00.200",
        };
        if (_contacts is not null) settings["ConnectionStrings:Contacts"] = _contacts.GrpcAddress.ToString();
        foreach (var (key, value) in overrides ?? new Dictionary<string, string?>()) settings[key] = value;
        return ServiceHost.StartAsync(
            (args, configure) => SegmentationModule.Build(args, builder =>
            {
                configure(builder);
                builder.Services.AddSingleton<TimeProvider>(Clock);
            }),
            settings);
    }

    /// <summary>A Contacts service publishing on the same virtual host (started once, on first use).</summary>
    public async Task<ServiceHost> StartContactsAsync()
    {
        if (_contacts is not null) return _contacts;
        var connectionString = await TestServers.CreateDatabaseAsync(_contactsDatabase);
        _contacts = await ServiceHost.StartAsync(contacts::Crm.Contacts.ContactsModule.Build, new Dictionary<string, string?>
        {
            ["ConnectionStrings:Postgres"] = connectionString,
            ["ConnectionStrings:RabbitMq"] = RabbitMqUri,
            ["Outbox:PollInterval"] = "00:00:00.050",
        });
        return _contacts;
    }

    /// <summary>The Contacts service's channel (its client types come from the <c>contacts</c> alias).</summary>
    public Grpc.Net.Client.GrpcChannel ContactsChannel => (_contacts ?? throw new InvalidOperationException("StartContactsAsync first")).Channel;

    /// <summary>Publishes as Contacts or Delivery would.</summary>
    public Task PublishAsync<T>(T message) where T : class => _bus!.Publish(message);

    /// <summary>Publishes with a message id of the test's choosing (the same id again is a broker redelivery).</summary>
    public Task PublishAsync<T>(T message, Guid messageId) where T : class => _bus!.Publish(message, ctx => ctx.MessageId = messageId);

    /// <summary>A query on the service's database as its owner (no row-level security), for assertions.</summary>
    public async Task<T> QueryScalarAsync<T>(string sql, object? args = null)
    {
        await using var conn = new NpgsqlConnection(ConnectionString);
        return await conn.ExecuteScalarAsync<T>(sql, args) ?? default!;
    }

    public async Task WaitUntilAsync(string countSql, object? args, long atLeast, int seconds = 30)
    {
        await using var conn = new NpgsqlConnection(ConnectionString);
        var deadline = DateTime.UtcNow.AddSeconds(seconds);
        while (await conn.ExecuteScalarAsync<long>(countSql, args) < atLeast)
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"Still fewer than {atLeast}: {countSql}");
            await Task.Delay(50);
        }
    }

    /// <summary>Waits until every dirty contact of the tenant has been refreshed.</summary>
    public async Task WaitRefreshedAsync(string tenant, int seconds = 30)
    {
        await using var conn = new NpgsqlConnection(ConnectionString);
        var deadline = DateTime.UtcNow.AddSeconds(seconds);
        while (await conn.ExecuteScalarAsync<long>("SELECT count(*) FROM dirty_contacts WHERE tenant_id = @tenant", new { tenant }) > 0)
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"Dirty contacts of {tenant} were not refreshed");
            await Task.Delay(50);
        }
    }

    public async Task DisposeAsync()
    {
        if (_bus is not null) await _bus.StopAsync();
        if (Host is not null) await Host.DisposeAsync();
        if (_contacts is not null)
        {
            await _contacts.DisposeAsync();
            await TestServers.DropDatabaseAsync(_contactsDatabase);
        }
        await TestServers.DropDatabaseAsync(_database);
        await TestServers.DeleteVirtualHostAsync(_vhost);
    }
}

[CollectionDefinition(Name)]
public sealed class SegmentationCollection : ICollectionFixture<SegmentationFixture>
{
    public const string Name = "segmentation";
}

/// <summary>Events the service published, as a bus bound to its exchanges received them.</summary>
public sealed class PublishedEvents
{
    private readonly List<object> _events = [];

    public void Add(object e)
    {
        lock (_events) _events.Add(e);
    }

    public IReadOnlyList<T> All<T>(Func<T, bool>? where = null)
    {
        lock (_events) return _events.OfType<T>().Where(e => where?.Invoke(e) ?? true).ToArray();
    }

    /// <summary>Waits until at least <paramref name="count"/> events of the type match.</summary>
    public async Task<IReadOnlyList<T>> WaitAsync<T>(Func<T, bool> where, int count = 1, int seconds = 30)
    {
        var deadline = DateTime.UtcNow.AddSeconds(seconds);
        while (true)
        {
            var found = All(where);
            if (found.Count >= count) return found;
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"{found.Count} of {count} {typeof(T).Name} events within {seconds} s");
            await Task.Delay(50);
        }
    }
}
