using Crm.Contacts.V1;
using Crm.TestSupport;
using Grpc.Core;
using MassTransit;

namespace Crm.Contacts.Tests.Infrastructure;

/// <summary>A Contacts service of its own: a fresh database and RabbitMQ virtual host, dropped afterwards.</summary>
public sealed class ContactsFixture : IAsyncLifetime
{
    private readonly string _database = TestServers.UniqueName("contacts_test");
    private readonly string _vhost = TestServers.UniqueName("contacts-test");

    public ServiceHost Host { get; private set; } = null!;
    public string ConnectionString { get; private set; } = "";
    public string RabbitMqUri { get; private set; } = "";

    public ContactsService.ContactsServiceClient Client => new(Host.Channel);
    public WorkspaceService.WorkspaceServiceClient Workspaces => new(Host.Channel);

    /// <summary>A tenant id no other test uses, so tests sharing the fixture never see each other's data.</summary>
    public static string NewTenant() => "t-" + Guid.NewGuid().ToString("N")[..12];

    public CallOptions As(string tenant, params string[] scopes) => Host.As(tenant, scopes);

    public async Task InitializeAsync()
    {
        ConnectionString = await TestServers.CreateDatabaseAsync(_database);
        RabbitMqUri = await TestServers.CreateVirtualHostAsync(_vhost);
        Host = await StartHostAsync(relayEnabled: true);
    }

    public Task<ServiceHost> StartHostAsync(bool relayEnabled) =>
        ServiceHost.StartAsync(ContactsModule.Build, new Dictionary<string, string?>
        {
            ["ConnectionStrings:Postgres"] = ConnectionString,
            ["ConnectionStrings:RabbitMq"] = RabbitMqUri,
            ["Outbox:RelayEnabled"] = relayEnabled.ToString(),
            ["Outbox:PollInterval"] = "00:00:00.050",
        });

    /// <summary>Publishes on the fixture's virtual host as another service would (a bus of its own, stopped after).</summary>
    public async Task PublishAsync(Func<IBus, Task> publish)
    {
        var bus = Bus.Factory.CreateUsingRabbitMq(cfg => cfg.Host(new Uri(RabbitMqUri)));
        await bus.StartAsync();
        try
        {
            await publish(bus);
        }
        finally
        {
            await bus.StopAsync();
        }
    }

    public async Task DisposeAsync()
    {
        if (Host is not null) await Host.DisposeAsync(); // a test may have stopped it already
        await TestServers.DropDatabaseAsync(_database);
        await TestServers.DeleteVirtualHostAsync(_vhost);
    }
}

[CollectionDefinition(Name)]
public sealed class ContactsCollection : ICollectionFixture<ContactsFixture>
{
    public const string Name = "contacts";
}
