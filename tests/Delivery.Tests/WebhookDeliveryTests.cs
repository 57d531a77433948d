using System.Text.Json;
using Crm.BuildingBlocks.Data;
using Crm.Delivery.Features.Webhooks;
using Crm.Delivery.Tests.Infrastructure;
using Crm.Delivery.V1;
using Crm.Fakes.Webhooks;
using Grpc.Core;
using Npgsql;

namespace Crm.Delivery.Tests;

/// <summary>Customer webhooks end to end: a real Delivery host, real servers, a loopback receiver, the test's own verifier.</summary>
[Collection(DeliveryCollection.Name)]
public sealed class WebhookDeliveryTests(DeliveryFixture fx) : IAsyncLifetime
{
    private static readonly (string, string, string) SmsMarketingIn = ("sms", "marketing", "opted_in");
    private readonly FakeWebhookReceiver _receiver = new();

    public Task InitializeAsync() => _receiver.StartAsync();

    public async Task DisposeAsync() => await _receiver.DisposeAsync();

    private async Task<WebhookEndpointWithSecret> RegisterAsync(string tenant, string path, params string[] types) =>
        await fx.Client.CreateWebhookEndpointAsync(new CreateWebhookEndpointRequest
        {
            Endpoint = new WebhookEndpoint { Url = new Uri(_receiver.BaseUri, path).ToString(), EventTypes = { types }, Enabled = true, Description = path },
        }, fx.As(tenant));

    private async Task<Message> SendAsync(string tenant, Guid contact, string key)
    {
        var m = await fx.Client.SendMessageAsync(new SendMessageRequest
        {
            IdempotencyKey = key, ContactId = contact.ToString(), Channel = Channel.Sms, Purpose = Purpose.Transactional, TextBody = "주문 확인",
        }, fx.As(tenant));
        Assert.Equal(MessageStatus.Sent, m.Status);
        return m;
    }

    private IReadOnlyList<ReceivedWebhook> At(string path) => _receiver.Received.Where(r => r.Path == "/" + path).ToList();

    private async Task<IReadOnlyList<ReceivedWebhook>> WaitAtAsync(string path, int count)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (At(path).Count < count)
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"{At(path).Count} of {count} webhooks at /{path}");
            await Task.Delay(20);
        }
        return At(path);
    }

    private string? Verify(string secret, ReceivedWebhook r) =>
        StandardWebhooksVerifier.Verify(secret, r.Id, r.Timestamp, r.Signature, r.Body, fx.Clock.GetUtcNow().ToUnixTimeSeconds());

    private async Task<WebhookDelivery> WaitForDeliveryAsync(string tenant, string endpointId, WebhookDeliveryStatus status)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (true)
        {
            var list = await fx.Client.ListWebhookDeliveriesAsync(new ListWebhookDeliveriesRequest { EndpointId = endpointId }, fx.As(tenant));
            if (list.Deliveries.FirstOrDefault(d => d.Status == status) is { } d) return d;
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"No {status} delivery: {list}");
            await Task.Delay(50);
        }
    }

    private async Task<ListWebhookDeliveriesResponse> WaitForDeliveriesAsync(string tenant, string endpointId, Func<WebhookDelivery, bool> done, int count)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (true)
        {
            var list = await fx.Client.ListWebhookDeliveriesAsync(new ListWebhookDeliveriesRequest { EndpointId = endpointId }, fx.As(tenant));
            if (list.Deliveries.Count(done) >= count) return list;
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"Fewer than {count} finished deliveries: {list}");
            await Task.Delay(50);
        }
    }

    [Fact]
    public async Task Should_deliver_one_signed_message_sent_per_subscribed_endpoint_and_sign_with_both_secrets_across_a_rotation()
    {
        var t = await fx.NewWorkspaceAsync();
        var c = await fx.NewContactAsync(t, phone: "+821071000001", consents: [SmsMarketingIn]);
        var a = await RegisterAsync(t, "a", WebhookEvents.MessageSent);
        var b = await RegisterAsync(t, "b", WebhookEvents.MessageSent, WebhookEvents.MessageFailed, "message.clicked");
        await RegisterAsync(t, "c", WebhookEvents.MessageSuppressed);

        var first = await SendAsync(t, c, "first");
        var atA = (await WaitAtAsync("a", 1)).Single();
        var atB = (await WaitAtAsync("b", 1)).Single();
        Assert.Null(Verify(a.Secret, atA));
        Assert.Null(Verify(b.Secret, atB));
        Assert.NotNull(Verify(b.Secret, atA)); // each endpoint its own secret
        Assert.NotEqual(atA.Id, atB.Id);
        Assert.Equal("application/json; charset=utf-8", atA.ContentType);
        using (var body = JsonDocument.Parse(atA.Body))
        {
            Assert.Equal("message.sent", body.RootElement.GetProperty("type").GetString());
            Assert.True(body.RootElement.TryGetProperty("timestamp", out _));
            Assert.Equal(first.MessageId, body.RootElement.GetProperty("data").GetProperty("message_id").GetString());
        }

        // The same message asked for again (a retried call) adds no delivery.
        await SendAsync(t, c, "first");

        // Rotation: the next delivery to A carries two signatures, the old secret's and the new one's, each verifying alone.
        var rotated = await fx.Client.RotateWebhookSecretAsync(new RotateWebhookSecretRequest { EndpointId = a.Endpoint.EndpointId }, fx.As(t));
        Assert.NotEqual(a.Secret, rotated.Secret);
        Assert.NotNull(rotated.Endpoint.PreviousSecretExpiresAt);
        var second = await SendAsync(t, c, "second");
        var secondAtA = (await WaitAtAsync("a", 2))[1];
        await WaitAtAsync("b", 2); // the second message reached B too: the first one's duplicates would have come before
        Assert.Equal(2, secondAtA.Signature!.Split(' ').Length);
        Assert.Null(Verify(a.Secret, secondAtA));
        Assert.Null(Verify(rotated.Secret, secondAtA));
        Assert.Contains(second.MessageId, secondAtA.Body);

        // Exactly one delivery per endpoint and message; the suppressed-only endpoint got none.
        Assert.Equal(2, At("a").Count);
        Assert.Equal(2, At("b").Count);
        Assert.Empty(At("c"));
        // An outcome is recorded just after the receiver answered: wait for both records, then look at them.
        var listed = await WaitForDeliveriesAsync(t, b.Endpoint.EndpointId, d => d.Status != WebhookDeliveryStatus.Pending, 2);
        Assert.Equal(2, listed.Deliveries.Count);
        Assert.All(listed.Deliveries, d => Assert.Equal((WebhookDeliveryStatus.Delivered, 1, 200), (d.Status, d.Attempts, d.LastStatusCode)));
    }

    [Fact]
    public async Task Should_queue_an_outcome_written_twice_once_per_endpoint()
    {
        var t = await fx.NewWorkspaceAsync();
        var a = await RegisterAsync(t, "dup", WebhookEvents.MessageSent);
        var sent = new Crm.Contracts.Delivery.MessageSent(t, Guid.NewGuid(), Guid.NewGuid(), "sms", null, "SM1", 1, DateTimeOffset.UtcNow);
        await using var dataSource = NpgsqlDataSource.Create(fx.ConnectionString);
        var db = new TenantDb(dataSource);
        var queued = new List<int>();
        for (var i = 0; i < 2; i++)
        {
            await using var scope = await db.BeginAsync(t);
            queued.Add(await WebhookEvents.EnqueueAsync(scope.Connection, scope.Transaction, t, [WebhookEvents.Of(sent)], DateTimeOffset.UtcNow));
            await scope.CommitAsync();
        }
        Assert.Equal([1, 0], queued);
        await WaitForDeliveryAsync(t, a.Endpoint.EndpointId, WebhookDeliveryStatus.Delivered);
        Assert.Single(await WaitAtAsync("dup", 1));
    }

    [Fact]
    public async Task Should_retry_after_500_and_wait_for_retry_after_on_429()
    {
        var t = await fx.NewWorkspaceAsync();
        var c = await fx.NewContactAsync(t, phone: "+821071000002", consents: [SmsMarketingIn]);
        var e = await RegisterAsync(t, "retry", WebhookEvents.MessageSent);
        _receiver.Enqueue(500);
        _receiver.Enqueue(429, retryAfterSeconds: 2);
        await SendAsync(t, c, "retry");
        var got = await WaitAtAsync("retry", 3);
        Assert.Equal([500, 429, 200], got.Select(r => r.AnsweredStatus));
        Assert.Single(got.Select(r => r.Id).Distinct()); // the same webhook-id on every attempt
        Assert.All(got, r => Assert.Null(Verify(e.Secret, r)));
        Assert.True(got[2].At - got[1].At >= TimeSpan.FromSeconds(1.9), $"retried {got[2].At - got[1].At} after a Retry-After of 2 s");
        var d = await WaitForDeliveryAsync(t, e.Endpoint.EndpointId, WebhookDeliveryStatus.Delivered);
        Assert.Equal(3, d.Attempts);
    }

    [Fact]
    public async Task Should_fail_for_good_when_the_schedule_runs_out()
    {
        var t = await fx.NewWorkspaceAsync();
        var c = await fx.NewContactAsync(t, phone: "+821071000003", consents: [SmsMarketingIn]);
        var e = await RegisterAsync(t, "down", WebhookEvents.MessageSent);
        _receiver.Enqueue(503, times: 10);
        await SendAsync(t, c, "down");
        var d = await WaitForDeliveryAsync(t, e.Endpoint.EndpointId, WebhookDeliveryStatus.Failed);
        Assert.Equal(4, d.Attempts); // the first and the test schedule's three retries
        Assert.Equal(503, d.LastStatusCode);
        Assert.Contains("gave up", d.LastError);
        Assert.Equal(4, At("down").Count);
    }

    [Fact]
    public async Task Should_disable_the_endpoint_on_410_and_say_why()
    {
        var t = await fx.NewWorkspaceAsync();
        var c = await fx.NewContactAsync(t, phone: "+821071000004", consents: [SmsMarketingIn]);
        var gone = await RegisterAsync(t, "gone", WebhookEvents.MessageSent);
        _receiver.Enqueue(410);
        await SendAsync(t, c, "one");
        var d = await WaitForDeliveryAsync(t, gone.Endpoint.EndpointId, WebhookDeliveryStatus.Failed);
        Assert.Equal((1, 410), (d.Attempts, d.LastStatusCode));
        var endpoint = await fx.Client.GetWebhookEndpointAsync(new GetWebhookEndpointRequest { EndpointId = gone.Endpoint.EndpointId }, fx.As(t));
        Assert.False(endpoint.Enabled);
        Assert.Contains("410", endpoint.DisabledReason);
        Assert.NotNull(endpoint.DisabledAt);

        // The next message reaches another endpoint only.
        await RegisterAsync(t, "other", WebhookEvents.MessageSent);
        await SendAsync(t, c, "two");
        await WaitAtAsync("other", 1);
        Assert.Single(At("gone"));
        Assert.Single((await fx.Client.ListWebhookDeliveriesAsync(new ListWebhookDeliveriesRequest { EndpointId = gone.Endpoint.EndpointId }, fx.As(t))).Deliveries);
    }

    [Fact]
    public async Task Should_show_no_workspace_the_endpoints_or_deliveries_of_another()
    {
        var a = await fx.NewWorkspaceAsync();
        var b = await fx.NewWorkspaceAsync();
        var c = await fx.NewContactAsync(a, phone: "+821071000005", consents: [SmsMarketingIn]);
        var e = await RegisterAsync(a, "iso", WebhookEvents.MessageSent);
        await SendAsync(a, c, "iso");
        await WaitForDeliveryAsync(a, e.Endpoint.EndpointId, WebhookDeliveryStatus.Delivered);
        var asB = fx.As(b);
        var id = e.Endpoint.EndpointId;
        Assert.Empty((await fx.Client.ListWebhookEndpointsAsync(new ListWebhookEndpointsRequest(), asB)).Endpoints);
        async Task NotFound(Func<Task> call) => Assert.Equal(StatusCode.NotFound, (await Assert.ThrowsAsync<RpcException>(call)).StatusCode);
        await NotFound(() => fx.Client.GetWebhookEndpointAsync(new GetWebhookEndpointRequest { EndpointId = id }, asB).ResponseAsync);
        await NotFound(() => fx.Client.ListWebhookDeliveriesAsync(new ListWebhookDeliveriesRequest { EndpointId = id }, asB).ResponseAsync);
        await NotFound(() => fx.Client.RotateWebhookSecretAsync(new RotateWebhookSecretRequest { EndpointId = id }, asB).ResponseAsync);
        await NotFound(() => fx.Client.UpdateWebhookEndpointAsync(new UpdateWebhookEndpointRequest
        {
            Endpoint = new WebhookEndpoint { EndpointId = id, Enabled = false }, UpdateMask = new Google.Protobuf.WellKnownTypes.FieldMask { Paths = { "enabled" } },
        }, asB).ResponseAsync);
        await NotFound(() => fx.Client.DeleteWebhookEndpointAsync(new DeleteWebhookEndpointRequest { EndpointId = id }, asB).ResponseAsync);
        var still = await fx.Client.GetWebhookEndpointAsync(new GetWebhookEndpointRequest { EndpointId = id }, fx.As(a));
        Assert.True(still.Enabled);
        Assert.Single((await fx.Client.ListWebhookDeliveriesAsync(new ListWebhookDeliveriesRequest { EndpointId = id }, fx.As(a))).Deliveries);
        await fx.Client.DeleteWebhookEndpointAsync(new DeleteWebhookEndpointRequest { EndpointId = id }, fx.As(a));
        Assert.Empty((await fx.Client.ListWebhookEndpointsAsync(new ListWebhookEndpointsRequest(), fx.As(a))).Endpoints);
    }

    [Fact]
    public async Task Should_refuse_bad_endpoints_naming_the_field()
    {
        var t = await fx.NewWorkspaceAsync();
        var e = await Assert.ThrowsAsync<RpcException>(() => fx.Client.CreateWebhookEndpointAsync(new CreateWebhookEndpointRequest
        {
            Endpoint = new WebhookEndpoint { Url = "ftp://hooks.example.com/x", EventTypes = { "message.sent", "message.teleported" } },
        }, fx.As(t)).ResponseAsync);
        Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
        var fields = e.GetRpcStatus()!.GetDetail<Google.Rpc.BadRequest>()!.FieldViolations.Select(v => v.Field).ToList();
        Assert.Equal(["endpoint.url", "endpoint.event_types[1]"], fields);
    }
}
