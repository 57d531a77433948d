using System.Net;
using System.Text;
using Crm.BuildingBlocks.Data;
using Crm.Delivery.Channels;
using Crm.Delivery.Security;
using Dapper;

namespace Crm.Delivery.Features.Webhooks;

/// <summary>
/// Sends queued customer webhooks. Due deliveries are claimed from PostgreSQL with FOR UPDATE SKIP LOCKED (so
/// replicas share them, as the deferred-message poller does), signed, POSTed through the outbound guard's
/// handler (no redirects, private addresses refused on every connection), and their outcomes written in one
/// statement: 2xx delivered; 410 Gone fails the delivery and disables the endpoint, saying why; anything else
/// (another status, a redirect, a timeout, a refused connection) is retried on the schedule, no sooner than a
/// 429/503's Retry-After, and failed for good when the schedule runs out.
/// </summary>
public sealed class WebhookDispatcher(TenantDb db, SecretBox secrets, HttpClient http, DeliveryOptions options, TimeProvider clock, ILogger<WebhookDispatcher> logger)
    : BackgroundService
{
    private readonly WebhookOptions _options = options.Webhooks;

    public const string HttpClientName = "webhooks";

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                while (await DispatchDueAsync(stoppingToken) > 0) { }
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                logger.LogError(ex, "Dispatching webhooks failed; retrying");
            }
            await Task.Delay(_options.PollInterval, clock, stoppingToken);
        }
    }

    private sealed class Claimed
    {
        public string TenantId { get; init; } = null!;
        public string DeliveryId { get; init; } = null!;
        public Guid EndpointId { get; init; }
        public string Payload { get; init; } = null!;
        public int Attempts { get; init; }
        public string Url { get; init; } = null!;
        public byte[] Secret { get; init; } = null!;
        public byte[]? PreviousSecret { get; init; }
        public DateTime? PreviousSecretExpiresAt { get; init; }
    }

    private sealed record Result(Claimed Delivery, string Status, DateTime? NextAttemptAt, int StatusCode, string Error, bool Gone);

    /// <summary>Claims one batch of due deliveries, sends them and records the outcomes; returns how many were due.</summary>
    public async Task<int> DispatchDueAsync(CancellationToken ct)
    {
        var now = clock.GetUtcNow().UtcDateTime;
        List<Claimed> due;
        // The one dispatcher over every tenant's queue.
        await using (var scope = await db.BeginCrossTenantAsync("webhook dispatcher", ct))
        {
            due = (await scope.Connection.QueryAsync<Claimed>("""
                WITH c AS (
                    SELECT d.tenant_id, d.delivery_id FROM webhook_deliveries d
                    WHERE d.status = 'pending' AND d.next_attempt_at <= @now AND (d.claimed_until IS NULL OR d.claimed_until < @now)
                      AND EXISTS (SELECT 1 FROM webhook_endpoints e WHERE e.tenant_id = d.tenant_id AND e.endpoint_id = d.endpoint_id AND e.enabled)
                    ORDER BY d.next_attempt_at
                    LIMIT @batch
                    FOR UPDATE OF d SKIP LOCKED)
                UPDATE webhook_deliveries d SET claimed_until = @until, attempts = d.attempts + 1
                FROM c, webhook_endpoints e
                WHERE d.tenant_id = c.tenant_id AND d.delivery_id = c.delivery_id AND e.tenant_id = d.tenant_id AND e.endpoint_id = d.endpoint_id
                RETURNING d.tenant_id, d.delivery_id, d.endpoint_id, d.payload, d.attempts, e.url, e.secret, e.previous_secret, e.previous_secret_expires_at
                """, new { now, until = now + options.ClaimLease + _options.RequestTimeout, batch = _options.BatchSize }, scope.Transaction)).AsList();
            await scope.CommitAsync(ct);
        }
        if (due.Count == 0) return 0;

        var keys = new Dictionary<(string, Guid), byte[][]>();
        foreach (var d in due) keys.TryAdd((d.TenantId, d.EndpointId), KeysOf(d, now));
        var results = new Result[due.Count];
        await Parallel.ForEachAsync(Enumerable.Range(0, due.Count), new ParallelOptions { MaxDegreeOfParallelism = _options.Concurrency, CancellationToken = ct },
            async (i, token) => results[i] = await SendAsync(due[i], keys[(due[i].TenantId, due[i].EndpointId)], token));
        await RecordAsync(results, ct);
        return due.Count;
    }

    /// <summary>The current secret's key, and the previous one's while its rotation period lasts.</summary>
    private byte[][] KeysOf(Claimed d, DateTime now)
    {
        var context = WebhookSecrets.AssociatedData(d.TenantId, d.EndpointId);
        var current = WebhookSignature.Key(secrets.Open(d.Secret, context));
        return d.PreviousSecret is { } previous && d.PreviousSecretExpiresAt > now
            ? [current, WebhookSignature.Key(secrets.Open(previous, context))]
            : [current];
    }

    private async Task<Result> SendAsync(Claimed d, byte[][] keys, CancellationToken ct)
    {
        var timestamp = clock.GetUtcNow().ToUnixTimeSeconds();
        using var request = new HttpRequestMessage(HttpMethod.Post, d.Url)
        {
            Content = new StringContent(d.Payload, Encoding.UTF8, "application/json"),
        };
        request.Headers.TryAddWithoutValidation("webhook-id", d.DeliveryId);
        request.Headers.TryAddWithoutValidation("webhook-timestamp", timestamp.ToString(System.Globalization.CultureInfo.InvariantCulture));
        request.Headers.TryAddWithoutValidation("webhook-signature", WebhookSignature.Header(keys, d.DeliveryId, timestamp, d.Payload));
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(_options.RequestTimeout);
        try
        {
            using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, timeout.Token);
            var code = (int)response.StatusCode;
            if (response.IsSuccessStatusCode) return new Result(d, "delivered", null, code, "", Gone: false);
            if (response.StatusCode == HttpStatusCode.Gone)
                return new Result(d, "failed", null, code, "410 Gone: the endpoint was disabled", Gone: true);
            var retryAfter = response.StatusCode is HttpStatusCode.TooManyRequests or HttpStatusCode.ServiceUnavailable ? RetryAfter(response) : null;
            var error = code is >= 300 and < 400 ? $"HTTP {code}: redirects are not followed" : $"HTTP {code}";
            return Retry(d, code, error, retryAfter);
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            return Retry(d, 0, $"no answer within {_options.RequestTimeout.TotalSeconds:0.#} s", null);
        }
        catch (HttpRequestException ex)
        {
            return Retry(d, 0, ProviderText.Bound(ex.InnerException?.Message ?? ex.Message), null);
        }
    }

    private TimeSpan? RetryAfter(HttpResponseMessage response)
    {
        var header = response.Headers.RetryAfter;
        var wait = header?.Delta ?? (header?.Date is { } date ? date - clock.GetUtcNow() : null);
        if (wait is null) return null;
        return wait < TimeSpan.Zero ? TimeSpan.Zero : wait > _options.MaxRetryAfter ? _options.MaxRetryAfter : wait;
    }

    /// <summary>The next attempt after the schedule's wait for this one (with jitter) and no sooner than Retry-After; none when the schedule ran out.</summary>
    private Result Retry(Claimed d, int code, string error, TimeSpan? retryAfter)
    {
        var schedule = _options.Schedule;
        if (d.Attempts > schedule.Count)
            return new Result(d, "failed", null, code, $"{error} (gave up after {d.Attempts} attempts)", Gone: false);
        var wait = schedule[d.Attempts - 1] * (0.8 + (0.4 * Random.Shared.NextDouble()));
        if (retryAfter > wait) wait = retryAfter.Value;
        return new Result(d, "pending", clock.GetUtcNow().UtcDateTime + wait, code, error, Gone: false);
    }

    private async Task RecordAsync(IReadOnlyList<Result> results, CancellationToken ct)
    {
        var now = clock.GetUtcNow().UtcDateTime;
        await using var scope = await db.BeginCrossTenantAsync("webhook dispatcher", ct);
        var (conn, tx) = scope;
        await conn.ExecuteAsync("""
            UPDATE webhook_deliveries d SET status = o.status, next_attempt_at = coalesce(o.next, d.next_attempt_at),
                last_status_code = nullif(o.code, 0), last_error = o.error, last_attempt_at = @now,
                delivered_at = CASE WHEN o.status = 'delivered' THEN @now END, claimed_until = NULL
            FROM unnest(@tenants, @ids, @statuses, @nexts, @codes, @errors) AS o(tenant, id, status, next, code, error)
            WHERE d.tenant_id = o.tenant AND d.delivery_id = o.id
            """, new
        {
            now,
            tenants = results.Select(r => r.Delivery.TenantId).ToArray(),
            ids = results.Select(r => r.Delivery.DeliveryId).ToArray(),
            statuses = results.Select(r => r.Status).ToArray(),
            nexts = results.Select(r => r.NextAttemptAt).ToArray(),
            codes = results.Select(r => r.StatusCode).ToArray(),
            errors = results.Select(r => r.Error).ToArray(),
        }, tx);
        var gone = results.Where(r => r.Gone).Select(r => r.Delivery).DistinctBy(d => (d.TenantId, d.EndpointId)).ToList();
        if (gone.Count > 0)
        {
            // The workspace reads why on the endpoint (GetWebhookEndpoint): disabled_reason and disabled_at.
            await conn.ExecuteAsync("""
                UPDATE webhook_endpoints e SET enabled = false, disabled_at = @now, updated_at = @now,
                    disabled_reason = 'the receiver answered 410 Gone at ' || to_char(@now AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
                FROM unnest(@tenants, @endpoints) AS g(tenant, endpoint)
                WHERE e.tenant_id = g.tenant AND e.endpoint_id = g.endpoint AND e.enabled
                """, new { now, tenants = gone.Select(d => d.TenantId).ToArray(), endpoints = gone.Select(d => d.EndpointId).ToArray() }, tx);
            foreach (var d in gone) logger.LogWarning("Webhook endpoint {EndpointId} of {Tenant} answered 410 Gone and was disabled", d.EndpointId, d.TenantId);
        }
        await scope.CommitAsync(ct);
    }
}
