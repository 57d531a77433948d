using Crm.Campaigns.V1;
using Crm.TestSupport;
using Dapper;
using Grpc.Core;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;

namespace Crm.Campaigns.Tests.Infrastructure;

/// <summary>
/// A Campaigns service of its own (database, RabbitMQ virtual host) and a bus that publishes events the
/// way Contacts, Segmentation and Delivery would.
/// </summary>
public sealed class CampaignsFixture : IAsyncLifetime
{
    private readonly string _database = TestServers.UniqueName("campaigns_test");
    private readonly string _vhost = TestServers.UniqueName("campaigns-test");
    private IBusControl? _bus;

    public string ConnectionString { get; private set; } = "";
    public string RabbitMqUri { get; private set; } = "";
    public ShiftedClock Clock { get; } = new();
    public ServiceHost Host { get; private set; } = null!;
    public CampaignsService.CampaignsServiceClient Client => new(Host.Channel);

    public static string NewTenant() => "t-" + Guid.NewGuid().ToString("N")[..12];

    public CallOptions As(string tenant, params string[] scopes) => Host.As(tenant, scopes);

    public async Task InitializeAsync()
    {
        ConnectionString = await TestServers.CreateDatabaseAsync(_database);
        RabbitMqUri = await TestServers.CreateVirtualHostAsync(_vhost);
        _bus = Bus.Factory.CreateUsingRabbitMq(cfg => cfg.Host(new Uri(RabbitMqUri)));
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
            ["Campaigns:RunPollInterval"] = "00:00:00.050",
        };
        foreach (var (key, value) in overrides ?? new Dictionary<string, string?>()) settings[key] = value;
        return ServiceHost.StartAsync(
            (args, configure) => CampaignsModule.Build(args, builder =>
            {
                configure(builder);
                builder.Services.AddSingleton<TimeProvider>(Clock);
            }),
            settings);
    }

    /// <summary>Publishes as Contacts, Segmentation or Delivery would.</summary>
    public Task PublishAsync<T>(T message) where T : class => _bus!.Publish(message);

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

    public async Task DisposeAsync()
    {
        if (_bus is not null) await _bus.StopAsync();
        if (Host is not null) await Host.DisposeAsync();
        await TestServers.DropDatabaseAsync(_database);
        await TestServers.DeleteVirtualHostAsync(_vhost);
    }
}

[CollectionDefinition(Name)]
public sealed class CampaignsCollection : ICollectionFixture<CampaignsFixture>
{
    public const string Name = "campaigns";
}
