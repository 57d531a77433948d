using System.Security.Cryptography;
using Crm.BuildingBlocks.Data;
using Crm.Delivery.Features.Webhooks;
using Crm.Delivery.Security;
using Crm.Delivery.V1;
using Crm.Fakes.Webhooks;
using Crm.TestSupport;
using Dapper;
using Grpc.Core;
using Npgsql;

namespace Crm.Delivery.Tests;

/// <summary>
/// A Delivery host as in production (Delivery:AllowPrivateProviderAddresses=false), on a database of its own:
/// webhook endpoints on the platform's own network are refused when registered, and a delivery to one that got
/// into the table anyway is refused when connecting.
/// </summary>
public sealed class WebhookGuardTests : IAsyncLifetime
{
    private readonly string _database = TestServers.UniqueName("delivery_hooks_guard");
    private readonly string _vhost = TestServers.UniqueName("delivery-hooks-guard");
    private readonly string _secretKey = Convert.ToBase64String(RandomNumberGenerator.GetBytes(32));
    private readonly FakeWebhookReceiver _receiver = new();
    private string _connectionString = "";
    private ServiceHost _host = null!;

    public async Task InitializeAsync()
    {
        _connectionString = await TestServers.CreateDatabaseAsync(_database);
        await _receiver.StartAsync();
        _host = await ServiceHost.StartAsync((args, configure) => DeliveryModule.Build(args, configure), new Dictionary<string, string?>
        {
            ["ConnectionStrings:Postgres"] = _connectionString,
            ["ConnectionStrings:RabbitMq"] = await TestServers.CreateVirtualHostAsync(_vhost),
            ["ConnectionStrings:Redis"] = TestServers.Redis,
            ["Delivery:SecretKey"] = _secretKey,
            ["Delivery:RedisKeyPrefix"] = $"test-{Guid.NewGuid():N}:",
            ["Delivery:AllowPrivateProviderAddresses"] = "false",
            ["Delivery:Webhooks:PollInterval"] = "00:00:00.050",
        });
    }

    public async Task DisposeAsync()
    {
        await _host.DisposeAsync();
        await _receiver.DisposeAsync();
        await TestServers.DropDatabaseAsync(_database);
        await TestServers.DeleteVirtualHostAsync(_vhost);
    }

    [Theory]
    [InlineData("https://127.0.0.1/hooks")]
    [InlineData("https://10.0.0.8/hooks")]
    [InlineData("https://169.254.169.254/latest/meta-data")]
    [InlineData("https://[::1]/hooks")]
    [InlineData("https://localhost/hooks")]          // a name that resolves to loopback
    [InlineData("http://hooks.example.com/x")]        // plain http where private addresses are not allowed
    public async Task Should_refuse_to_register_an_endpoint_the_guard_blocks(string url)
    {
        var client = new DeliveryService.DeliveryServiceClient(_host.Channel);
        var e = await Assert.ThrowsAsync<RpcException>(() => client.CreateWebhookEndpointAsync(new CreateWebhookEndpointRequest
        {
            Endpoint = new WebhookEndpoint { Url = url, EventTypes = { WebhookEvents.MessageSent }, Enabled = true },
        }, _host.As("t-" + Guid.NewGuid().ToString("N")[..12])).ResponseAsync);
        Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
        Assert.Equal("endpoint.url", e.GetRpcStatus()!.GetDetail<Google.Rpc.BadRequest>()!.FieldViolations.Single().Field);
    }

    [Fact]
    public async Task Should_refuse_the_connection_to_an_endpoint_on_loopback_that_got_past_registration()
    {
        var tenant = "t-" + Guid.NewGuid().ToString("N")[..12];
        var endpointId = Guid.NewGuid();
        await using var dataSource = NpgsqlDataSource.Create(_connectionString);
        await using (var scope = await new TenantDb(dataSource).BeginAsync(tenant))
        {
            // As if the name had resolved to a public address when it was registered (DNS rebinding).
            await scope.Connection.ExecuteAsync("""
                INSERT INTO webhook_endpoints (tenant_id, endpoint_id, url, event_types, secret, created_at, updated_at)
                VALUES (@tenant, @endpointId, @url, '{message.sent}', @secret, now(), now())
                """, new
            {
                tenant, endpointId, url = new Uri(_receiver.BaseUri, "rebound").ToString(),
                secret = new SecretBox(_secretKey).Seal(WebhookSignature.NewSecret(), WebhookSecrets.AssociatedData(tenant, endpointId)),
            }, scope.Transaction);
            var sent = new Crm.Contracts.Delivery.MessageSent(tenant, Guid.NewGuid(), Guid.NewGuid(), "sms", null, "SM1", 1, DateTimeOffset.UtcNow);
            await WebhookEvents.EnqueueAsync(scope.Connection, scope.Transaction, tenant, [WebhookEvents.Of(sent)], DateTimeOffset.UtcNow);
            await scope.CommitAsync();
        }
        var client = new DeliveryService.DeliveryServiceClient(_host.Channel);
        var deadline = DateTime.UtcNow.AddSeconds(30);
        WebhookDelivery d;
        while (true)
        {
            // The recorded attempt is the proof the dispatcher tried.
            d = (await client.ListWebhookDeliveriesAsync(new ListWebhookDeliveriesRequest { EndpointId = endpointId.ToString() }, _host.As(tenant))).Deliveries.Single();
            if (d.Attempts > 0 && d.LastError.Length > 0) break;
            Assert.True(DateTime.UtcNow < deadline, "the delivery was never attempted");
            await Task.Delay(50);
        }
        Assert.Contains("outside the public internet", d.LastError);
        Assert.Equal(WebhookDeliveryStatus.Pending, d.Status); // retried later: a name may resolve elsewhere then
        Assert.Equal(0, _receiver.Count);
    }
}
