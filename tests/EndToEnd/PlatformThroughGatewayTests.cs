extern alias gateway;

using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Crm.BuildingBlocks.Tenancy;
using Crm.Contacts;
using Crm.Delivery;
using Crm.Fakes.Twilio;
using Crm.TestSupport;
using Dapper;
using Npgsql;
using GatewayModule = gateway::Crm.Gateway.GatewayModule;

namespace Crm.EndToEnd.Tests;

/// <summary>
/// The whole platform as a marketer's tool sees it: Contacts and Delivery (each with its own
/// database, sharing a RabbitMQ virtual host and Redis) behind the gateway, driven over REST with
/// an API key, sending to the loopback Twilio API. Contacts' events reach Delivery's projection over
/// RabbitMQ; nothing is inserted behind the services' backs.
/// </summary>
public sealed class PlatformThroughGatewayTests : IAsyncLifetime
{
    private readonly string _contactsDb = TestServers.UniqueName("e2e_contacts");
    private readonly string _deliveryDb = TestServers.UniqueName("e2e_delivery");
    private readonly string _vhost = TestServers.UniqueName("e2e");
    private readonly FakeTwilioServer _twilio = new();
    private string _deliveryConnection = "", _contactsConnection = "";
    private ServiceHost _contacts = null!, _delivery = null!, _gateway = null!;

    public async Task InitializeAsync()
    {
        var rabbit = await TestServers.CreateVirtualHostAsync(_vhost);
        await _twilio.StartAsync();
        _contactsConnection = await TestServers.CreateDatabaseAsync(_contactsDb);
        _contacts = await ServiceHost.StartAsync(ContactsModule.Build, new Dictionary<string, string?>
        {
            ["ConnectionStrings:Postgres"] = _contactsConnection,
            ["ConnectionStrings:RabbitMq"] = rabbit,
            ["Outbox:PollInterval"] = "00:00:00.100",
        });
        _deliveryConnection = await TestServers.CreateDatabaseAsync(_deliveryDb);
        _delivery = await ServiceHost.StartAsync(DeliveryModule.Build, new Dictionary<string, string?>
        {
            ["ConnectionStrings:Postgres"] = _deliveryConnection,
            ["ConnectionStrings:RabbitMq"] = rabbit,
            ["ConnectionStrings:Redis"] = TestServers.Redis,
            ["Delivery:SecretKey"] = Convert.ToBase64String(new byte[32]),
            ["Delivery:AllowPrivateProviderAddresses"] = "true", // the provider fakes are on loopback
            ["Delivery:RedisKeyPrefix"] = $"{_vhost}:",
            ["Outbox:PollInterval"] = "00:00:00.100",
        });
        _gateway = await ServiceHost.StartIssuerAsync(GatewayModule.Build, new Dictionary<string, string?>
        {
            ["Gateway:ContactsGrpc"] = _contacts.GrpcAddress.ToString(),
            ["ConnectionStrings:Redis"] = TestServers.Redis,
            ["Gateway:RedisKeyPrefix"] = $"{_vhost}:",
            ["ReverseProxy:Clusters:contacts-http:Destinations:contacts:Address"] = _contacts.HttpAddress.ToString(),
            ["ReverseProxy:Clusters:contacts-grpc:Destinations:contacts:Address"] = _contacts.GrpcAddress.ToString(),
            ["ReverseProxy:Clusters:delivery-http:Destinations:delivery:Address"] = _delivery.HttpAddress.ToString(),
            ["ReverseProxy:Clusters:delivery-grpc:Destinations:delivery:Address"] = _delivery.GrpcAddress.ToString(),
        });
    }

    public async Task DisposeAsync()
    {
        await _gateway.DisposeAsync();
        await _delivery.DisposeAsync();
        await _contacts.DisposeAsync();
        await _twilio.DisposeAsync();
        await TestServers.DropDatabaseAsync(_contactsDb);
        await TestServers.DropDatabaseAsync(_deliveryDb);
        await TestServers.DeleteVirtualHostAsync(_vhost);
    }

    private HttpClient Rest(string credential) => _gateway.Rest(credential);

    private static async Task<JsonElement> OkAsync(Task<HttpResponseMessage> call)
    {
        var response = await call;
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, $"{(int)response.StatusCode}: {body}");
        return JsonDocument.Parse(body).RootElement;
    }

    [Fact]
    public async Task Should_send_a_transactional_sms_to_a_contact_created_over_rest_and_stop_when_they_opt_out()
    {
        const string tenant = "e2e-shop";
        using var admin = Rest(_gateway.Tokens.Issue(tenant, [Scope.All]));
        var account = new
        {
            account = new
            {
                accountId = "twilio-main", kind = "PROVIDER_KIND_TWILIO", channel = "CHANNEL_SMS", isDefault = true, messagesPerSecond = 100,
                settings = new Dictionary<string, string> { ["account_sid"] = _twilio.AccountSid, ["from"] = "+15005550006", ["base_url"] = _twilio.BaseUri.ToString().TrimEnd('/') },
            },
            secret = _twilio.AuthToken,
        };
        await OkAsync(admin.PutAsJsonAsync("/v1/provider-accounts", account));
        var key = (await OkAsync(admin.PostAsJsonAsync("/v1/api-keys", new { name = "shop backend", scopes = new[] { "contacts.read", "contacts.write", "delivery.send", "delivery.read" } })))
            .GetProperty("secret").GetString()!;

        // The shop's backend, with its key: a customer (a Korean mobile number as typed), then an order-shipped SMS.
        using var shop = Rest(key);
        var contactId = (await OkAsync(shop.PostAsJsonAsync("/v1/contacts", new { externalId = "C-9001", name = "최유나", phone = "010-4000-0001" })))
            .GetProperty("contact").GetProperty("id").GetString()!;
        await WaitForDeliveryAsync("SELECT count(*) FROM contact_channels WHERE tenant_id = @tenant AND phone = '+821040000001'", tenant);

        var sent = await OkAsync(shop.PostAsJsonAsync("/v1/messages", new
        {
            idempotencyKey = "order-9001-shipped", contactId, channel = "CHANNEL_SMS", purpose = "PURPOSE_TRANSACTIONAL", textBody = "[데모상점] 주문하신 상품이 발송되었습니다.",
        }));
        Assert.Equal("MESSAGE_STATUS_SENT", sent.GetProperty("status").GetString());
        var received = Assert.Single(_twilio.Messages, m => m.To == "+821040000001");
        Assert.Equal("[데모상점] 주문하신 상품이 발송되었습니다.", received.Body);

        // She opts out of transactional SMS (through Contacts); Delivery hears of it and stops.
        await OkAsync(shop.PostAsJsonAsync("/v1/consents", new
        {
            contact = new { externalId = "C-9001" }, channel = "CHANNEL_SMS", purpose = "PURPOSE_TRANSACTIONAL", status = "CONSENT_STATUS_OPTED_OUT", source = "CONSENT_SOURCE_API",
        }));
        await WaitForDeliveryAsync("SELECT count(*) FROM contact_consents WHERE tenant_id = @tenant AND purpose = 'transactional' AND status = 'opted_out'", tenant);
        var refused = await OkAsync(shop.PostAsJsonAsync("/v1/messages", new
        {
            idempotencyKey = "order-9002-shipped", contactId, channel = "CHANNEL_SMS", purpose = "PURPOSE_TRANSACTIONAL", textBody = "[데모상점] 두 번째 주문이 발송되었습니다.",
        }));
        Assert.Equal("MESSAGE_STATUS_SUPPRESSED", refused.GetProperty("status").GetString());
        var timeline = await OkAsync(shop.GetAsync($"/v1/messages/{refused.GetProperty("messageId").GetString()}"));
        Assert.Contains("opted out of transactional sms", timeline.ToString(), StringComparison.Ordinal);
        Assert.Single(_twilio.Messages, m => m.To == "+821040000001");

        // A message that went out cannot be withdrawn (POST /v1/messages:cancel says so).
        var cancel = await OkAsync(shop.PostAsJsonAsync("/v1/messages:cancel", new { messageIds = new[] { sent.GetProperty("messageId").GetString() }, reason = "test" }));
        Assert.Equal(sent.GetProperty("messageId").GetString(), cancel.GetProperty("notCancelled")[0].GetString());

        // The key cannot change the workspace's delivery policy: it has no delivery.admin.
        Assert.Equal(HttpStatusCode.Forbidden, (await shop.PutAsJsonAsync("/v1/provider-accounts", account)).StatusCode);
    }

    [Fact]
    public async Task Should_erase_a_contact_from_every_table_of_every_service_and_from_redis()
    {
        const string tenant = "e2e-erase";
        const string name = "한지민", email = "Jimin.Han@example.kr", phone = "010-4000-0777";
        string[] traces = ["%한지민%", "%jimin.han%", "%1040000777%", "%4000-0777%", "%40000777%"];
        using var admin = Rest(_gateway.Tokens.Issue(tenant, [Scope.All]));
        await OkAsync(admin.PutAsJsonAsync("/v1/provider-accounts", new
        {
            account = new
            {
                accountId = "twilio-main", kind = "PROVIDER_KIND_TWILIO", channel = "CHANNEL_SMS", isDefault = true, messagesPerSecond = 100,
                settings = new Dictionary<string, string> { ["account_sid"] = _twilio.AccountSid, ["from"] = "+15005550006", ["base_url"] = _twilio.BaseUri.ToString().TrimEnd('/') },
            },
            secret = _twilio.AuthToken,
        }));

        // Everything the platform keeps of a customer: profile, consent history, orders, engagement,
        // a sent message naming her, her reply, the events of all of it in both outboxes.
        var contactId = (await OkAsync(admin.PostAsJsonAsync("/v1/contacts", new { externalId = "C-7001", name, email, phone, attributes = new { nickname = new { stringValue = name } } })))
            .GetProperty("contact").GetProperty("id").GetString()!;
        await OkAsync(admin.PostAsJsonAsync("/v1/consents", new
        {
            contact = new { externalId = "C-7001" }, channel = "CHANNEL_SMS", purpose = "PURPOSE_MARKETING", status = "CONSENT_STATUS_OPTED_IN",
            source = "CONSENT_SOURCE_FORM", evidence = $"signup form by {name} <{email}> {phone}",
        }));
        await OkAsync(admin.PostAsJsonAsync("/v1/transactions", new
        {
            orders = new[] { new { orderId = "A-7001", contact = new { externalId = "C-7001" }, occurredAt = "2026-11-20T05:30:00Z", currency = "KRW", total = "12900" } },
        }));
        await OkAsync(admin.PostAsJsonAsync("/v1/engagement", new
        {
            events = new[] { new { eventId = "ev-7001", contact = new { externalId = "C-7001" }, type = "ENGAGEMENT_TYPE_CLICKED", channel = "CHANNEL_SMS", occurredAt = "2026-11-21T05:30:00Z", properties = new { who = name } } },
        }));
        await WaitForDeliveryAsync("SELECT count(*) FROM contact_channels WHERE tenant_id = @tenant AND phone = '+821040000777'", tenant);
        var sent = await OkAsync(admin.PostAsJsonAsync("/v1/messages", new
        {
            idempotencyKey = "order-A-7001-shipped", contactId, channel = "CHANNEL_SMS", purpose = "PURPOSE_TRANSACTIONAL", textBody = $"{name}님, 주문하신 상품이 발송되었습니다.",
        }));
        Assert.Equal("MESSAGE_STATUS_SENT", sent.GetProperty("status").GetString());
        var reply = new Dictionary<string, string> { ["MessageSid"] = "SM7001", ["From"] = "+821040000777", ["To"] = "+15005550006", ["Body"] = $"감사합니다 {name}" };
        var replyUrl = Crm.Delivery.Channels.Sms.TwilioIncomingMessages.UrlFor(_delivery.HttpAddress.ToString(), tenant, "twilio-main");
        using (var http = new HttpClient())
        using (var signed = new HttpRequestMessage(HttpMethod.Post, replyUrl) { Content = new FormUrlEncodedContent(reply) })
        {
            signed.Headers.Add(Crm.Delivery.Channels.Sms.TwilioSignature.HeaderName, Crm.Delivery.Channels.Sms.TwilioSignature.Compute(replyUrl, reply, _twilio.AuthToken));
            Assert.Equal(HttpStatusCode.OK, (await http.SendAsync(signed)).StatusCode);
        }
        var redis = await StackExchange.Redis.ConnectionMultiplexer.ConnectAsync(TestServers.Redis);
        var server = redis.GetServer(redis.GetEndPoints()[0]);
        var contactKeys = $"{_vhost}:*{Guid.Parse(contactId):N}*";
        Assert.NotEmpty(server.Keys(pattern: contactKeys)); // the transactional safety cap counted the message
        Assert.True(await CountTracesAsync(traces) > 0, "the probe finds nothing even before erasure");

        await OkAsync(admin.PostAsJsonAsync("/v1/contacts:erase", new { contact = new { externalId = "C-7001" } }));
        await WaitForDeliveryAsync("SELECT count(*) FROM contact_channels WHERE tenant_id = @tenant AND erased", tenant);
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (server.Keys(pattern: contactKeys).Any())
        {
            Assert.True(DateTime.UtcNow < deadline, "the contact's Redis keys were never removed");
            await Task.Delay(50);
        }
        Assert.Equal(0, await CountTracesAsync(traces));

        // What the ledger needs stays: the message, its outcome and times, without its body.
        var kept = await OkAsync(admin.GetAsync($"/v1/messages/{sent.GetProperty("messageId").GetString()}"));
        Assert.Equal("MESSAGE_STATUS_SENT", kept.GetProperty("status").GetString());
    }

    /// <summary>Rows of every table of both services' databases whose text holds any of the patterns.</summary>
    private async Task<long> CountTracesAsync(string[] patterns)
    {
        long found = 0;
        foreach (var connection in new[] { _contactsConnection, _deliveryConnection })
        {
            await using var conn = new NpgsqlConnection(connection);
            var tables = await conn.QueryAsync<string>("SELECT tablename FROM pg_tables WHERE schemaname = 'public'");
            foreach (var table in tables)
                found += await conn.ExecuteScalarAsync<long>($"SELECT count(*) FROM \"{table}\" t WHERE t::text ILIKE ANY(@patterns)", new { patterns });
        }
        return found;
    }

    private async Task WaitForDeliveryAsync(string countSql, string tenant)
    {
        await using var conn = new NpgsqlConnection(_deliveryConnection);
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (await conn.ExecuteScalarAsync<long>(countSql, new { tenant }) == 0)
        {
            Assert.True(DateTime.UtcNow < deadline, $"Delivery's projection never saw: {countSql}");
            await Task.Delay(50);
        }
    }
}
