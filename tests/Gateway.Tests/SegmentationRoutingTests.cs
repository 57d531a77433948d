extern alias gateway;
extern alias segmentation;

using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Crm.BuildingBlocks.Tenancy;
using Crm.Contacts;
using Crm.TestSupport;
using Grpc.Core;
using Grpc.Net.Client;
using GatewayModule = gateway::Crm.Gateway.GatewayModule;
using SegmentationModule = segmentation::Crm.Segmentation.SegmentationModule;
using SegmentationClient = segmentation::Crm.Segmentation.V1.SegmentationService.SegmentationServiceClient;

namespace Crm.Gateway.Tests;

/// <summary>
/// Segmentation behind the gateway: every REST prefix of crm.segmentation.v1 and its gRPC service reach
/// the Segmentation service (not Contacts, not the gateway's 404), and API keys carry segments.read /
/// segments.write within what their creator has.
/// </summary>
public sealed class SegmentationRoutingTests : IAsyncLifetime
{
    private readonly string _contactsDatabase = TestServers.UniqueName("gateway_seg_contacts");
    private readonly string _segmentationDatabase = TestServers.UniqueName("gateway_seg");
    private readonly string _vhost = TestServers.UniqueName("gateway-seg");
    private ServiceHost _contacts = null!;
    private ServiceHost _segmentation = null!;
    private ServiceHost _gateway = null!;

    public async Task InitializeAsync()
    {
        var rabbit = await TestServers.CreateVirtualHostAsync(_vhost);
        _contacts = await ServiceHost.StartAsync(ContactsModule.Build, new Dictionary<string, string?>
        {
            ["ConnectionStrings:Postgres"] = await TestServers.CreateDatabaseAsync(_contactsDatabase),
            ["ConnectionStrings:RabbitMq"] = rabbit,
        });
        _segmentation = await ServiceHost.StartAsync(SegmentationModule.Build, new Dictionary<string, string?>
        {
            ["ConnectionStrings:Postgres"] = await TestServers.CreateDatabaseAsync(_segmentationDatabase),
            ["ConnectionStrings:RabbitMq"] = rabbit,
            ["ConnectionStrings:Contacts"] = _contacts.GrpcAddress.ToString(),
        });
        var gateway = new Dictionary<string, string?>(_contacts.AsGatewayClusters("contacts").Concat(_segmentation.AsGatewayClusters("segmentation")))
        {
            ["Gateway:ContactsGrpc"] = _contacts.GrpcAddress.ToString(),
            ["ConnectionStrings:Redis"] = TestServers.Redis,
            ["Gateway:RedisKeyPrefix"] = $"{_vhost}:",
        };
        _gateway = await ServiceHost.StartIssuerAsync(GatewayModule.Build, gateway);
    }

    public async Task DisposeAsync()
    {
        await _gateway.DisposeAsync();
        await _segmentation.DisposeAsync();
        await _contacts.DisposeAsync();
        await TestServers.DropDatabaseAsync(_segmentationDatabase);
        await TestServers.DropDatabaseAsync(_contactsDatabase);
        await TestServers.DeleteVirtualHostAsync(_vhost);
    }

    /// <summary>One call under each REST prefix the proto's google.api.http options use.</summary>
    private static readonly (string Method, string Path)[] RestCalls =
    [
        ("GET", "/v1/segments"),
        ("GET", $"/v1/segments/{Guid.NewGuid()}"),
        ("GET", $"/v1/segments/{Guid.NewGuid()}/members"),
        ("POST", "/v1/segments:preview"),
        ("GET", $"/v1/segmentation/contacts/{Guid.NewGuid()}"),
        ("POST", "/v1/segmentation:rebuild"),
        ("GET", "/v1/rfm/report"),
        ("PUT", "/v1/rfm/table"),
        ("GET", "/v1/lead-scoring/rules"),
        ("GET", $"/v1/lead-scores/{Guid.NewGuid()}"),
        ("GET", "/v1/tiers"),
    ];

    [Fact]
    public async Task Should_route_every_segmentation_rest_prefix_and_its_grpc_service_to_segmentation()
    {
        // A token the services do not trust (another issuer's key): only the service whose transcoding
        // matched the path verifies it, so Segmentation's own refusal proves the route; the gateway without
        // the route answers 404, and Contacts (a wrong cluster) would answer 404 for a path it does not have.
        var stranger = TestTokenKeys.Generate("elsewhere").Issuer().Issue("gw-seg", [Scope.All]);
        using var rest = _gateway.Rest(stranger);
        foreach (var (method, path) in RestCalls)
        {
            using var request = new HttpRequestMessage(new HttpMethod(method), path);
            if (method != "GET") request.Content = JsonContent.Create(new { });
            var response = await rest.SendAsync(request);
            Assert.True(response.StatusCode == HttpStatusCode.Unauthorized, $"{method} {path}: {(int)response.StatusCode}");
            Assert.Contains("identity token is invalid", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }

        using var channel = GrpcChannel.ForAddress(_gateway.GrpcAddress);
        var grpc = new SegmentationClient(channel);
        var refused = await Assert.ThrowsAsync<RpcException>(() => grpc.GetRfmReportAsync(new(),
            new Metadata { { "authorization", "Bearer " + stranger } }).ResponseAsync);
        Assert.Equal(StatusCode.Unauthenticated, refused.StatusCode); // without the route: UNIMPLEMENTED (HTTP 404)
        Assert.Contains("identity token is invalid", refused.Status.Detail, StringComparison.Ordinal);

        // With an API key holding the segments scopes, the gateway's token for it is accepted by Segmentation.
        var key = await CreateKeyAsync(_gateway.Tokens.Issue("gw-seg", [Scope.All]), Scope.SegmentsRead, Scope.SegmentsWrite);
        using var keyed = _gateway.Rest(key.GetProperty("secret").GetString());
        var report = await keyed.GetAsync("/v1/rfm/report");
        Assert.NotEqual(HttpStatusCode.Unauthorized, report.StatusCode);
        Assert.NotEqual(HttpStatusCode.Forbidden, report.StatusCode);
        var viaGrpc = await Record.ExceptionAsync(() => grpc.ListSegmentsAsync(new(),
            new Metadata { { "authorization", "Bearer " + key.GetProperty("secret").GetString() } }).ResponseAsync);
        Assert.False(viaGrpc is RpcException { StatusCode: StatusCode.Unauthenticated or StatusCode.PermissionDenied }, viaGrpc?.Message);
    }

    [Fact]
    public async Task Should_grant_segments_scopes_to_a_key_only_within_its_creators_scopes()
    {
        var full = await CreateKeyAsync(_gateway.Tokens.Issue("gw-seg-scopes", [Scope.All]), Scope.SegmentsRead, Scope.SegmentsWrite);
        Assert.Equal([Scope.SegmentsRead, Scope.SegmentsWrite], full.GetProperty("key").GetProperty("scopes").EnumerateArray().Select(s => s.GetString()).Order());

        // An admin who may only read segments cannot hand out segments.write; a made-up scope is refused by name.
        using var reader = _gateway.Rest(_gateway.Tokens.Issue("gw-seg-scopes", [Scope.WorkspaceAdmin, Scope.SegmentsRead]));
        var tooMuch = await reader.PostAsJsonAsync("/v1/api-keys", new { name = "segments tool", scopes = new[] { Scope.SegmentsRead, Scope.SegmentsWrite } });
        Assert.Equal(HttpStatusCode.BadRequest, tooMuch.StatusCode);
        Assert.Contains("'segments.write' is more than the caller has", await tooMuch.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        var unknown = await reader.PostAsJsonAsync("/v1/api-keys", new { name = "segments tool", scopes = new[] { "segments.admin" } });
        Assert.Equal(HttpStatusCode.BadRequest, unknown.StatusCode);
        Assert.Contains("'segments.admin' is not a scope a key can have", await unknown.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.OK, (await reader.PostAsJsonAsync("/v1/api-keys", new { name = "segments reader", scopes = new[] { Scope.SegmentsRead } })).StatusCode);
    }

    [Fact]
    public async Task Should_refuse_segmentation_calls_to_a_key_without_the_segments_scopes()
    {
        var contactsOnly = (await CreateKeyAsync(_gateway.Tokens.Issue("gw-seg-refused", [Scope.All]), Scope.ContactsRead, Scope.ContactsWrite))
            .GetProperty("secret").GetString()!;
        var readOnly = (await CreateKeyAsync(_gateway.Tokens.Issue("gw-seg-refused", [Scope.All]), Scope.SegmentsRead))
            .GetProperty("secret").GetString()!;
        using var rest = _gateway.Rest(contactsOnly);
        Assert.Equal(HttpStatusCode.Forbidden, (await rest.GetAsync("/v1/rfm/report")).StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, (await rest.GetAsync("/v1/segments")).StatusCode);
        using var channel = GrpcChannel.ForAddress(_gateway.GrpcAddress);
        var grpc = new SegmentationClient(channel);
        var refused = await Assert.ThrowsAsync<RpcException>(() => grpc.ListSegmentsAsync(new(),
            new Metadata { { "authorization", "Bearer " + contactsOnly } }).ResponseAsync);
        Assert.Equal(StatusCode.PermissionDenied, refused.StatusCode);

        // segments.read reads, but does not write.
        using var reader = _gateway.Rest(readOnly);
        Assert.Equal(HttpStatusCode.OK, (await reader.GetAsync("/v1/segments")).StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, (await reader.PostAsJsonAsync("/v1/segments", new { name = "vip" })).StatusCode);
    }

    /// <summary>A key made through the gateway by the given admin identity; the whole CreateApiKeyResponse.</summary>
    private async Task<JsonElement> CreateKeyAsync(string adminToken, params string[] scopes)
    {
        using var admin = _gateway.Rest(adminToken);
        var created = await admin.PostAsJsonAsync("/v1/api-keys", new { name = "segments tool", scopes });
        Assert.Equal(HttpStatusCode.OK, created.StatusCode);
        return await created.Content.ReadFromJsonAsync<JsonElement>();
    }
}
