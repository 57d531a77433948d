extern alias gateway;

using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Crm.BuildingBlocks.Tenancy;
using Crm.Contacts;
using Crm.Contacts.V1;
using Crm.TestSupport;
using Grpc.Core;
using Grpc.Net.Client;
using Microsoft.Extensions.Configuration;
using GatewayModule = gateway::Crm.Gateway.GatewayModule;

namespace Crm.Gateway.Tests;

/// <summary>
/// A real Contacts service (its own database and virtual host) behind a real gateway on loopback:
/// API keys created through the gateway, exchanged for identity tokens, REST and gRPC routed,
/// revoked keys refused, and each key held to its rate.
/// </summary>
public sealed class GatewayTests : IAsyncLifetime
{
    private readonly string _database = TestServers.UniqueName("gateway_test");
    private readonly string _vhost = TestServers.UniqueName("gateway-test");
    private ServiceHost _contacts = null!;
    private ServiceHost _gateway = null!;

    public async Task InitializeAsync()
    {
        _contacts = await ServiceHost.StartAsync(ContactsModule.Build, new Dictionary<string, string?>
        {
            ["ConnectionStrings:Postgres"] = await TestServers.CreateDatabaseAsync(_database),
            ["ConnectionStrings:RabbitMq"] = await TestServers.CreateVirtualHostAsync(_vhost),
        });
        _gateway = await StartGatewayAsync();
    }

    /// <summary>A gateway replica: every replica shares Redis (and so each key's rate).</summary>
    private Task<ServiceHost> StartGatewayAsync() => ServiceHost.StartIssuerAsync(GatewayModule.Build, new Dictionary<string, string?>
        {
            ["Gateway:ContactsGrpc"] = _contacts.GrpcAddress.ToString(),
            ["ConnectionStrings:Redis"] = TestServers.Redis,
            ["Gateway:RedisKeyPrefix"] = $"{_vhost}:",
            ["Gateway:KeyCacheFor"] = "00:00:00.200",
            ["Gateway:KeyUseFlushInterval"] = "00:00:00.200",
            ["Gateway:RequestsPerSecond"] = "1",
            ["Gateway:Burst"] = "5",
            ["ReverseProxy:Clusters:contacts-http:Destinations:contacts:Address"] = _contacts.HttpAddress.ToString(),
            ["ReverseProxy:Clusters:contacts-grpc:Destinations:contacts:Address"] = _contacts.GrpcAddress.ToString(),
        });

    public async Task DisposeAsync()
    {
        await _gateway.DisposeAsync();
        await _contacts.DisposeAsync();
        await TestServers.DropDatabaseAsync(_database);
        await TestServers.DeleteVirtualHostAsync(_vhost);
    }

    private HttpClient Rest(string credential) => _gateway.Rest(credential);

    private Task<(string KeyId, string Secret)> CreateKeyAsync(string tenant, params string[] scopes) => CreateKeyAsync(tenant, null, scopes);

    private async Task<(string KeyId, string Secret)> CreateKeyAsync(string tenant, DateTimeOffset? expiresAt, params string[] scopes)
    {
        // A workspace admin (here with an identity token) creates the key through the gateway.
        using var admin = Rest(_gateway.Tokens.Issue(tenant, [Scope.All]));
        var created = await admin.PostAsJsonAsync("/v1/api-keys", new { name = "marketing tool", scopes, expiresAt = expiresAt?.ToString("O") });
        Assert.Equal(HttpStatusCode.OK, created.StatusCode);
        var body = await created.Content.ReadFromJsonAsync<JsonElement>();
        return (body.GetProperty("key").GetProperty("keyId").GetString()!, body.GetProperty("secret").GetString()!);
    }

    [Fact]
    public async Task Should_route_rest_and_grpc_for_an_api_key_and_refuse_it_once_revoked()
    {
        var (keyId, key) = await CreateKeyAsync("gw-shop", Scope.ContactsRead, Scope.ContactsWrite);
        Assert.StartsWith("crm_", key, StringComparison.Ordinal);

        using var rest = Rest(key);
        var upsert = await rest.PostAsJsonAsync("/v1/contacts", new { externalId = "c-1", phone = "010-2222-3333" });
        Assert.Equal(HttpStatusCode.OK, upsert.StatusCode);
        var contact = await rest.GetFromJsonAsync<JsonElement>("/v1/contacts/external/c-1");
        Assert.Equal("+821022223333", contact.GetProperty("phone").GetString());

        // gRPC through the gateway's h2c port, with the same key.
        using var channel = GrpcChannel.ForAddress(_gateway.GrpcAddress);
        var grpc = new ContactsService.ContactsServiceClient(channel);
        var auth = new Metadata { { "authorization", "Bearer " + key } };
        var viaGrpc = await grpc.GetContactAsync(new GetContactRequest { Contact = new ContactRef { ExternalId = "c-1" } }, auth);
        Assert.Equal(contact.GetProperty("id").GetString(), viaGrpc.Id);

        // The key acts only within its scopes and its workspace.
        Assert.Equal(HttpStatusCode.Forbidden, (await rest.GetAsync("/v1/api-keys")).StatusCode);

        using var admin = Rest(_gateway.Tokens.Issue("gw-shop", [Scope.All]));
        Assert.Equal(HttpStatusCode.OK, (await admin.PostAsync($"/v1/api-keys/{keyId}:revoke", null)).StatusCode);
        await Task.Delay(300); // the gateway trusts a resolved key for KeyCacheFor (200 ms here)
        Assert.Equal(HttpStatusCode.Unauthorized, (await rest.GetAsync("/v1/contacts/external/c-1")).StatusCode);
        var refused = await Assert.ThrowsAsync<RpcException>(() =>
            grpc.GetContactAsync(new GetContactRequest { Contact = new ContactRef { ExternalId = "c-1" } }, auth).ResponseAsync);
        Assert.Equal(StatusCode.Unauthenticated, refused.StatusCode);
    }

    [Fact]
    public async Task Should_refuse_unknown_keys_and_hold_each_key_to_its_rate()
    {
        using var forged = Rest("crm_" + Guid.NewGuid().ToString("N") + "_" + new string('A', 43));
        Assert.Equal(HttpStatusCode.Unauthorized, (await forged.GetAsync("/v1/workspace")).StatusCode);

        var (_, key) = await CreateKeyAsync("gw-busy", Scope.ContactsRead);
        var (_, other) = await CreateKeyAsync("gw-busy", Scope.ContactsRead);
        // Two gateway replicas share the key's rate: a burst of 5 in all, refilled at 1 a second.
        await using var replica = await StartGatewayAsync();
        using var rest = Rest(key);
        using var viaReplica = replica.Rest(key);
        // Both replicas take their first API-key request (which compiles the path) with the other key,
        // so the eight calls below take milliseconds, not the second that refills a token.
        using (var warmUp = Rest(other)) Assert.Equal(HttpStatusCode.OK, (await warmUp.GetAsync("/v1/workspace")).StatusCode);
        using (var warmUp = replica.Rest(other)) Assert.Equal(HttpStatusCode.OK, (await warmUp.GetAsync("/v1/workspace")).StatusCode);
        // The bucket refills at 1 a second, so what may pass depends on how long the calls took: on a busy
        // machine the eight calls can take longer than a second. Count the OKs against the time they took.
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var statuses = new List<HttpStatusCode>();
        for (var i = 0; i < 4; i++)
        {
            statuses.Add((await rest.GetAsync("/v1/workspace")).StatusCode);
            statuses.Add((await viaReplica.GetAsync("/v1/workspace")).StatusCode);
        }
        var refills = (int)clock.Elapsed.TotalSeconds;
        // Not shared, each replica would let 4 of its 4 pass (8 in all).
        Assert.InRange(statuses.Count(s => s == HttpStatusCode.OK), 5, 5 + refills + 1);
        HttpResponseMessage limited;
        var more = 0;
        do limited = await rest.GetAsync("/v1/workspace");
        while (limited.StatusCode == HttpStatusCode.OK && ++more < 10);
        Assert.Equal(HttpStatusCode.TooManyRequests, limited.StatusCode);
        Assert.Equal("1", limited.Headers.RetryAfter?.ToString());

        // Another key of the same workspace has its own bucket.
        using var second = Rest(other);
        Assert.Equal(HttpStatusCode.OK, (await second.GetAsync("/v1/workspace")).StatusCode);
    }

    [Fact]
    public async Task Should_show_when_a_key_was_last_used_and_refuse_it_once_expired()
    {
        var expiresAt = DateTimeOffset.UtcNow.AddSeconds(3);
        var (keyId, key) = await CreateKeyAsync("gw-expiry", expiresAt, Scope.ContactsRead);
        var (idleId, _) = await CreateKeyAsync("gw-expiry", Scope.ContactsRead);
        using var admin = Rest(_gateway.Tokens.Issue("gw-expiry", [Scope.All]));
        async Task<JsonElement> ListedAsync(string id) =>
            (await admin.GetFromJsonAsync<JsonElement>("/v1/api-keys")).GetProperty("keys").EnumerateArray().Single(k => k.GetProperty("keyId").GetString() == id);

        using var rest = Rest(key);
        var before = DateTimeOffset.UtcNow.AddSeconds(-1);
        Assert.Equal(HttpStatusCode.OK, (await rest.GetAsync("/v1/workspace")).StatusCode);
        // The gateway writes the keys' use in batches (every 200 ms here): wait for it, not for a fixed time.
        var deadline = DateTime.UtcNow.AddSeconds(10);
        JsonElement listed;
        while (!(listed = await ListedAsync(keyId)).TryGetProperty("lastUsedAt", out _) && DateTime.UtcNow < deadline) await Task.Delay(50);
        var lastUsed = DateTimeOffset.Parse(listed.GetProperty("lastUsedAt").GetString()!, System.Globalization.CultureInfo.InvariantCulture);
        Assert.InRange(lastUsed, before, DateTimeOffset.UtcNow.AddSeconds(1));
        Assert.Equal(expiresAt.ToUnixTimeSeconds(), DateTimeOffset.Parse(listed.GetProperty("expiresAt").GetString()!, System.Globalization.CultureInfo.InvariantCulture).ToUnixTimeSeconds());
        // The flush that wrote the used key's time ran: the unused key shows none.
        Assert.False((await ListedAsync(idleId)).TryGetProperty("lastUsedAt", out _));

        // Past its expiry the key is refused like a revoked one (the gateway's cache ends at the expiry).
        var wait = expiresAt - DateTimeOffset.UtcNow + TimeSpan.FromMilliseconds(100);
        if (wait > TimeSpan.Zero) await Task.Delay(wait);
        Assert.Equal(HttpStatusCode.Unauthorized, (await rest.GetAsync("/v1/workspace")).StatusCode);
    }

    [Theory]
    [InlineData(null, "Tenancy:SigningKey is empty")]
    [InlineData("public", "Tenancy:SigningKey is a PEM \"PUBLIC KEY\"")]
    [InlineData("no-kid", "Tenancy:SigningKeyId is required")]
    public async Task Should_not_start_an_issuer_without_a_usable_private_key(string? key, string message)
    {
        var settings = new Dictionary<string, string?>
        {
            ["Kestrel:Endpoints:Grpc:Url"] = $"http://127.0.0.1:{TestServers.FreePort()}",
            ["Kestrel:Endpoints:Http:Url"] = $"http://127.0.0.1:{TestServers.FreePort()}",
            ["ConnectionStrings:Redis"] = TestServers.Redis,
            ["Tenancy:SigningKeyId"] = key == "no-kid" ? "" : "k1",
            ["Tenancy:SigningKey"] = key switch { "public" => TestTokenKeys.Default.PublicPem, "no-kid" => TestTokenKeys.Default.PrivatePem, _ => "" },
        };
        await using var app = GatewayModule.Build([], b => b.Configuration.AddInMemoryCollection(settings));
        var refused = await Assert.ThrowsAsync<Microsoft.Extensions.Options.OptionsValidationException>(() => app.StartAsync());
        Assert.Contains(message, refused.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Should_answer_503_when_contacts_cannot_check_a_key()
    {
        await using var orphan = await ServiceHost.StartIssuerAsync(GatewayModule.Build, new Dictionary<string, string?>
        {
            ["Gateway:ContactsGrpc"] = $"http://127.0.0.1:{TestServers.FreePort()}", // nothing listens there
            ["ConnectionStrings:Redis"] = TestServers.Redis,
        });
        using var http = orphan.Rest("crm_" + Guid.NewGuid().ToString("N") + "_" + new string('A', 43));
        var response = await http.GetAsync("/v1/workspace");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        Assert.Equal("1", response.Headers.RetryAfter?.ToString());
    }

    [Fact]
    public async Task Should_stay_ready_without_redis_and_refuse_only_keyed_requests_with_503()
    {
        var (_, key) = await CreateKeyAsync("gw-redis-down", Scope.ContactsRead);
        // A Redis of this test's own, so that it can be stopped and started again.
        var port = TestServers.FreePort();
        var redis = StartRedis(port);
        try
        {
            await using var gateway = await ServiceHost.StartIssuerAsync(GatewayModule.Build, new Dictionary<string, string?>
            {
                ["Gateway:ContactsGrpc"] = _contacts.GrpcAddress.ToString(),
                ["ConnectionStrings:Redis"] = $"127.0.0.1:{port}",
                ["ReverseProxy:Clusters:contacts-http:Destinations:contacts:Address"] = _contacts.HttpAddress.ToString(),
            });
            using var health = gateway.Rest(null);
            using var keyed = gateway.Rest(key);
            using var withToken = gateway.Rest(gateway.Tokens.Issue("gw-redis-down", [Scope.ContactsRead]));
            Assert.Equal(HttpStatusCode.OK, (await keyed.GetAsync("/v1/workspace")).StatusCode);

            redis.Kill();
            await redis.WaitForExitAsync();
            // Readiness does not depend on Redis: a blip must not take every replica out of the Service.
            Assert.Equal(HttpStatusCode.OK, (await health.GetAsync("/health/ready")).StatusCode);
            Assert.Equal(HttpStatusCode.OK, (await health.GetAsync("/metrics")).StatusCode);
            // A keyed request cannot have its rate checked: refused (fails closed), promptly, with 503.
            var started = System.Diagnostics.Stopwatch.StartNew();
            var refused = await keyed.GetAsync("/v1/workspace");
            Assert.Equal(HttpStatusCode.ServiceUnavailable, refused.StatusCode);
            Assert.Equal("1", refused.Headers.RetryAfter?.ToString());
            Assert.True(started.Elapsed < TimeSpan.FromSeconds(3), $"the 503 took {started.Elapsed}");
            // Identity-token calls carry no rate in Redis and go on.
            Assert.Equal(HttpStatusCode.OK, (await withToken.GetAsync("/v1/workspace")).StatusCode);
            Assert.Equal(HttpStatusCode.OK, (await health.GetAsync("/health/ready")).StatusCode);

            // Redis back: keyed requests go through again once the multiplexer has reconnected.
            redis = StartRedis(port);
            var deadline = DateTime.UtcNow.AddSeconds(30);
            HttpStatusCode status;
            while ((status = (await keyed.GetAsync("/v1/workspace")).StatusCode) != HttpStatusCode.OK && DateTime.UtcNow < deadline)
                await Task.Delay(200);
            Assert.Equal(HttpStatusCode.OK, status);
        }
        finally
        {
            if (!redis.HasExited) redis.Kill();
            redis.Dispose();
        }
    }

    /// <summary>A throwaway redis-server (the binary scripts/infra.sh installs) on loopback, without persistence.</summary>
    private static System.Diagnostics.Process StartRedis(int port)
    {
        var process = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo("redis-server",
            ["--port", port.ToString(System.Globalization.CultureInfo.InvariantCulture), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        {
            RedirectStandardOutput = true,
            UseShellExecute = false,
        })!;
        // Ready when it says so; its output is then drained so that it never blocks on a full pipe.
        string? line;
        while ((line = process.StandardOutput.ReadLine()) is not null && !line.Contains("Ready to accept connections", StringComparison.Ordinal)) { }
        if (line is null) throw new InvalidOperationException($"redis-server did not start on port {port}");
        _ = process.StandardOutput.ReadToEndAsync();
        return process;
    }

    [Fact]
    public async Task Should_import_a_csv_uploaded_over_rest_reporting_bad_rows_by_line()
    {
        var (_, key) = await CreateKeyAsync("gw-upload", Scope.ContactsRead, Scope.ContactsWrite);
        using var rest = Rest(key);
        // Korean column names: the header carries the mapping percent-encoded (HTTP headers are ASCII).
        var mapping = Uri.EscapeDataString("""
            {"fileName": "주문.csv", "transactions": {"orderId": "주문번호", "customerId": "고객", "occurredAt": "when",
             "sku": "sku", "quantity": "qty", "unitPrice": "price", "fixedCurrency": "KRW"}}
            """);
        var csv = "주문번호,고객,when,sku,qty,price\n"
            + "A-1,c-1,2026-11-20T10:00:00+09:00,TEA,2,12900\n"
            + "A-1,c-1,2026-11-20T10:00:00+09:00,CUP,1,8000\n"
            + "A-2,c-2,yesterday,TEA,1,12900\n";
        using var upload = new HttpRequestMessage(HttpMethod.Post, "/v1/imports/Transactions") { Content = new StringContent(csv, System.Text.Encoding.UTF8, "text/csv") };
        upload.Headers.Add("crm-import-header", mapping);
        var response = await rest.SendAsync(upload);
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, body);
        var import = JsonDocument.Parse(body).RootElement;
        Assert.Equal("IMPORT_STATUS_COMPLETED", import.GetProperty("status").GetString());
        // Proto JSON writes 64-bit numbers as strings.
        long Int64(JsonElement e, string name) => long.Parse(e.GetProperty(name).GetString()!, System.Globalization.CultureInfo.InvariantCulture);
        Assert.Equal((2L, 1L, 1L), (Int64(import, "rowsAccepted"), Int64(import, "rowsRejected"), Int64(import, "ordersCreated")));
        var error = import.GetProperty("errors")[0];
        Assert.Equal((4L, "when"), (Int64(error, "line"), error.GetProperty("column").GetString()));
        var id = response.Headers.GetValues("crm-import-id").Single();
        Assert.Equal(id, (await rest.GetFromJsonAsync<JsonElement>($"/v1/imports/{id}")).GetProperty("importId").GetString());

        // No mapping: 400 naming the header. A key without contacts.write: 403 from Contacts, passed on.
        var bare = await rest.PostAsync("/v1/imports/transactions", new StringContent(csv));
        Assert.Equal(HttpStatusCode.BadRequest, bare.StatusCode);
        Assert.Equal("crm-import-header", (await bare.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("details")[0].GetProperty("fieldViolations")[0].GetProperty("field").GetString());
        var (_, reader) = await CreateKeyAsync("gw-upload", Scope.ContactsRead);
        using var readOnly = Rest(reader);
        using var refused = new HttpRequestMessage(HttpMethod.Post, "/v1/imports/transactions") { Content = new StringContent(csv) };
        refused.Headers.Add("crm-import-header", mapping);
        Assert.Equal(HttpStatusCode.Forbidden, (await readOnly.SendAsync(refused)).StatusCode);
    }
}
