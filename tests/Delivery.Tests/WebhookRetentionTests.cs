using Crm.Delivery.Features.Webhooks;
using Crm.Delivery.Tests.Infrastructure;
using Crm.Delivery.V1;
using Dapper;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;

namespace Crm.Delivery.Tests;

[Collection(DeliveryCollection.Name)]
public sealed class WebhookRetentionTests(DeliveryFixture fx)
{
    [Fact]
    public async Task Should_delete_delivered_and_failed_deliveries_past_retention_across_tenants_in_batches_and_keep_the_rest()
    {
        var a = await fx.NewWorkspaceAsync();
        var b = await fx.NewWorkspaceAsync();
        var endpointA = await RegisterAsync(a);
        var endpointB = await RegisterAsync(b);
        var now = fx.Clock.GetUtcNow().UtcDateTime;
        await using var db = new NpgsqlConnection(fx.ConnectionString);
        await db.OpenAsync();
        // The owner is bound by the policies too: this seeding session sees every tenant.
        await db.ExecuteAsync("SELECT set_config('crm.tenant', '*', false)");
        // Eight days ago: 2,100 delivered for A (more than two batches), one failed for good for B, one
        // still pending for A (its next retry far off); a day ago: one delivered for A.
        await db.ExecuteAsync("""
            INSERT INTO webhook_deliveries (tenant_id, delivery_id, endpoint_id, event_type, event_key, payload, status, attempts,
                next_attempt_at, created_at, last_attempt_at, delivered_at)
            SELECT @a, 'old-delivered-' || i, @endpointA, 'message.sent', 'old-delivered-' || i, '{}', 'delivered', 1,
                @old, @old, @old, @old FROM generate_series(1, 2100) AS i;
            INSERT INTO webhook_deliveries (tenant_id, delivery_id, endpoint_id, event_type, event_key, payload, status, attempts,
                next_attempt_at, created_at, last_attempt_at)
            VALUES (@b, 'old-failed', @endpointB, 'message.sent', 'old-failed', '{}', 'failed', 12, @old, @old, @old),
                   (@a, 'old-pending', @endpointA, 'message.sent', 'old-pending', '{}', 'pending', 3, @later, @old, @old);
            INSERT INTO webhook_deliveries (tenant_id, delivery_id, endpoint_id, event_type, event_key, payload, status, attempts,
                next_attempt_at, created_at, last_attempt_at, delivered_at)
            VALUES (@a, 'recent-delivered', @endpointA, 'message.sent', 'recent-delivered', '{}', 'delivered', 1, @recent, @recent, @recent, @recent);
            """, new
        {
            a, b, endpointA, endpointB, old = now.AddDays(-8), recent = now.AddDays(-1), later = now.AddDays(1),
        });

        var deleted = await fx.Host.App.Services.GetRequiredService<WebhookRetention>().CleanAsync(CancellationToken.None);

        Assert.True(deleted >= 2101, $"deleted {deleted} deliveries");
        var left = (await db.QueryAsync<string>("SELECT delivery_id FROM webhook_deliveries WHERE tenant_id IN (@a, @b)", new { a, b })).Order();
        Assert.Equal(["old-pending", "recent-delivered"], left);
    }

    private async Task<Guid> RegisterAsync(string tenant)
    {
        var e = await fx.Client.CreateWebhookEndpointAsync(new CreateWebhookEndpointRequest
        {
            Endpoint = new WebhookEndpoint { Url = "http://127.0.0.1:9/retention", EventTypes = { WebhookEvents.MessageSent }, Enabled = true },
        }, fx.As(tenant));
        return Guid.Parse(e.Endpoint.EndpointId);
    }
}
