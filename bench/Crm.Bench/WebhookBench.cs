using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using Crm.BuildingBlocks.Data;
using Crm.BuildingBlocks.Net;
using Crm.Contracts.Delivery;
using Crm.Delivery;
using Crm.Delivery.Features.Webhooks;
using Crm.Delivery.Security;
using Crm.Fakes.Webhooks;
using Dapper;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;

namespace Crm.Bench;

/// <summary>
/// Customer webhooks: 20,000 message.sent deliveries queued in PostgreSQL and sent by Delivery's own
/// <see cref="WebhookDispatcher"/> (claim with SKIP LOCKED, sign with the endpoint's secret, POST through the
/// outbound guard's handler, mark delivered) to a loopback receiver, against raw HttpClient POSTs of the same
/// bodies to the same receiver. Same concurrency on both sides (32 in flight), best of three runs each.
/// </summary>
public static class WebhookBench
{
    private const int Deliveries = 20_000;
    private const int Concurrency = 32;
    private const int Runs = 3;
    private const string Tenant = "bench";

    public static async Task RunAsync(BenchEnvironment env)
    {
        DefaultTypeMap.MatchNamesWithUnderscores = true; // as the service sets it (AddPostgres)
        var database = await env.FreshDatabaseAsync("crm_bench_webhooks");
        await using var dataSource = NpgsqlDataSource.Create(database);
        await new Migrator(dataSource, [MigrationSource.BuildingBlocks, new MigrationSource("delivery", typeof(DeliveryModule).Assembly)],
            NullLogger<Migrator>.Instance).MigrateAsync();
        await using var receiver = new FakeWebhookReceiver { Record = false };
        await receiver.StartAsync();
        try
        {
            var key = Convert.ToBase64String(RandomNumberGenerator.GetBytes(32));
            var db = new TenantDb(dataSource);
            var url = new Uri(receiver.BaseUri, "hooks").ToString();
            var bodies = await QueueAsync(db, new SecretBox(key), url);
            var options = new DeliveryOptions { SecretKey = key, Webhooks = { BatchSize = 500, Concurrency = Concurrency } };
            using var guarded = new HttpClient(new OutboundGuard(allowPrivateAddresses: true).CreateHttpHandler()) { Timeout = Timeout.InfiniteTimeSpan };
            var dispatcher = new WebhookDispatcher(db, new SecretBox(key), guarded, options, TimeProvider.System, NullLogger<WebhookDispatcher>.Instance);
            using var raw = new HttpClient(new SocketsHttpHandler { AllowAutoRedirect = false });

            await RawAsync(raw, url, bodies.Take(2000).ToList()); // warm-up of both paths
            await ResetAsync(dataSource);
            await DrainAsync(dispatcher);
            double ours = 0, baseline = 0;
            for (var run = 0; run < Runs; run++)
            {
                await ResetAsync(dataSource);
                var sw = Stopwatch.StartNew();
                var sent = await DrainAsync(dispatcher);
                ours = Math.Max(ours, sent / sw.Elapsed.TotalSeconds);
                if (sent != Deliveries) throw new InvalidOperationException($"dispatched {sent} of {Deliveries}");
                sw.Restart();
                await RawAsync(raw, url, bodies);
                baseline = Math.Max(baseline, Deliveries / sw.Elapsed.TotalSeconds);
            }
            await using var conn = await dataSource.OpenConnectionAsync();
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"bench webhooks: {ours:0} deliveries/s, {ours / baseline:0.00}x of raw HttpClient ({Deliveries} signed deliveries claimed from PostgreSQL, {Concurrency} in flight, best of {Runs}; raw POSTs {baseline:0}/s)"));
        }
        finally
        {
            await env.DropDatabaseAsync("crm_bench_webhooks");
        }
    }

    private static async Task<List<string>> QueueAsync(TenantDb db, SecretBox secrets, string url)
    {
        var endpointId = Guid.NewGuid();
        var events = Enumerable.Range(0, Deliveries)
            .Select(i => WebhookEvents.Of(new MessageSent(Tenant, Guid.NewGuid(), Guid.NewGuid(), "sms", "spring-sale", $"SM{i:x24}", 1, DateTimeOffset.UtcNow)))
            .ToList();
        await using var scope = await db.BeginAsync(Tenant);
        await scope.Connection.ExecuteAsync("""
            INSERT INTO webhook_endpoints (tenant_id, endpoint_id, url, event_types, secret, created_at, updated_at)
            VALUES (@Tenant, @endpointId, @url, '{message.sent}', @secret, now(), now())
            """, new { Tenant, endpointId, url, secret = secrets.Seal(WebhookSignature.NewSecret(), WebhookSecrets.AssociatedData(Tenant, endpointId)) }, scope.Transaction);
        await WebhookEvents.EnqueueAsync(scope.Connection, scope.Transaction, Tenant, events, DateTimeOffset.UtcNow);
        await scope.CommitAsync();
        return events.Select(e => e.Payload).ToList();
    }

    private static async Task ResetAsync(NpgsqlDataSource dataSource)
    {
        await using var scope = await new TenantDb(dataSource).BeginAsync(Tenant);
        await scope.Connection.ExecuteAsync("UPDATE webhook_deliveries SET status = 'pending', attempts = 0, next_attempt_at = now() - interval '1 second', claimed_until = NULL",
            transaction: scope.Transaction);
        await scope.CommitAsync();
        await using var conn = await dataSource.OpenConnectionAsync();
        await conn.ExecuteAsync("VACUUM ANALYZE webhook_deliveries");
    }

    private static async Task<int> DrainAsync(WebhookDispatcher dispatcher)
    {
        var total = 0;
        for (int n; (n = await dispatcher.DispatchDueAsync(CancellationToken.None)) > 0;) total += n;
        return total;
    }

    private static Task RawAsync(HttpClient http, string url, IReadOnlyList<string> bodies) =>
        Parallel.ForEachAsync(bodies, new ParallelOptions { MaxDegreeOfParallelism = Concurrency }, async (body, ct) =>
        {
            using var response = await http.PostAsync(url, new StringContent(body, System.Text.Encoding.UTF8, "application/json"), ct);
            response.EnsureSuccessStatusCode();
        });
}
