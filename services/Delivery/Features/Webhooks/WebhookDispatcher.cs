using System.Collections.Concurrent;
using System.Net;
using System.Text;
using System.Threading.Channels;
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
                await DispatchDueAsync(stoppingToken);
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

    /// <summary>
    /// Sends every due delivery and returns how many there were. Claiming, sending and recording overlap, so
    /// the connections never idle during PostgreSQL's round trips: the next batch is claimed while the
    /// current one is being sent (at most one batch waits claimed and unsent), <see cref="WebhookOptions.Concurrency"/>
    /// senders each take the next delivery as soon as their previous one is answered (a slow receiver holds
    /// up one sender, not the batch), and the outcomes that have come in are recorded together in one
    /// statement while later ones are sent. A delivery is recorded only after its attempt ended; one sent
    /// and not recorded (the process died) is sent again when its claim runs out: at least once.
    /// </summary>
    public async Task<int> DispatchDueAsync(CancellationToken ct)
    {
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var claimed = Channel.CreateBounded<Claimed>(new BoundedChannelOptions(_options.BatchSize) { SingleWriter = true });
        var outcomes = Channel.CreateUnbounded<Result>(new UnboundedChannelOptions { SingleReader = true });
        // A stage that fails stops the others: nothing more is claimed or sent without being recorded.
        async Task<T> Stage<T>(Func<Task<T>> run)
        {
            try
            {
                return await run();
            }
            catch
            {
                await stop.CancelAsync();
                throw;
            }
        }
        var claimer = Stage(() => ClaimAllAsync(claimed.Writer, stop.Token));
        var senders = Enumerable.Range(0, _options.Concurrency).Select(_ => Stage(async () =>
        {
            await foreach (var d in claimed.Reader.ReadAllAsync(stop.Token))
                outcomes.Writer.TryWrite(await SendAsync(d, KeysOf(d), stop.Token));
            return 0;
        })).ToArray();
        _ = Task.WhenAll(senders).ContinueWith(t => outcomes.Writer.TryComplete(t.Exception), TaskScheduler.Default);
        var recorder = Stage(async () =>
        {
            await RecordAllAsync(outcomes.Reader, stop.Token);
            return 0;
        });
        Task[] stages = [claimer, .. senders, recorder];
        try
        {
            await Task.WhenAll(stages);
        }
        catch when (!ct.IsCancellationRequested)
        {
            // The stage that failed first, rather than one it stopped.
            var cause = stages.Where(t => t.IsFaulted).SelectMany(t => t.Exception!.InnerExceptions).FirstOrDefault(e => e is not OperationCanceledException);
            if (cause is not null) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(cause);
            throw;
        }
        return claimer.Result;
    }

    /// <summary>Claims due deliveries batch by batch until none is due, handing them to the senders.</summary>
    private async Task<int> ClaimAllAsync(ChannelWriter<Claimed> output, CancellationToken ct)
    {
        var count = 0;
        try
        {
            for (List<Claimed> due; (due = await ClaimAsync(ct)).Count > 0;)
            {
                count += due.Count;
                foreach (var d in due) await output.WriteAsync(d, ct);
            }
            output.Complete();
            return count;
        }
        catch (Exception ex)
        {
            output.TryComplete(ex);
            throw;
        }
    }

    private async Task<List<Claimed>> ClaimAsync(CancellationToken ct)
    {
        var now = clock.GetUtcNow().UtcDateTime;
        // The one dispatcher over every tenant's queue.
        await using var scope = await db.BeginCrossTenantAsync("webhook dispatcher", ct);
        var due = (await scope.Connection.QueryAsync<Claimed>(new CommandDefinition("""
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
            """, new { now, until = now + options.ClaimLease + _options.RequestTimeout, batch = _options.BatchSize }, scope.Transaction,
            cancellationToken: ct))).AsList();
        await scope.CommitAsync(ct);
        return due;
    }

    /// <summary>Records the outcomes as they come in: whatever has arrived (up to a batch) in one statement.</summary>
    private async Task RecordAllAsync(ChannelReader<Result> input, CancellationToken ct)
    {
        var results = new List<Result>(_options.BatchSize);
        while (await input.WaitToReadAsync(ct))
        {
            results.Clear();
            while (results.Count < _options.BatchSize && input.TryRead(out var r)) results.Add(r);
            await RecordAsync(results, ct);
        }
    }

    /// <summary>
    /// Opened secrets by endpoint, kept while the endpoint's sealed secrets are the same bytes (a rotation
    /// seals new ones), so a busy endpoint's secret is not decrypted for every delivery.
    /// </summary>
    private readonly ConcurrentDictionary<(string Tenant, Guid Endpoint), OpenedKeys> _keys = new();
    private const int KeysCacheLimit = 10_000;

    private sealed record OpenedKeys(byte[] Secret, byte[]? PreviousSecret, byte[] Key, byte[]? PreviousKey);

    /// <summary>The current secret's key, and the previous one's while its rotation period lasts.</summary>
    private byte[][] KeysOf(Claimed d)
    {
        if (!_keys.TryGetValue((d.TenantId, d.EndpointId), out var opened) || !opened.Secret.AsSpan().SequenceEqual(d.Secret)
            || !(opened.PreviousSecret ?? []).AsSpan().SequenceEqual(d.PreviousSecret ?? []))
        {
            var context = WebhookSecrets.AssociatedData(d.TenantId, d.EndpointId);
            opened = new OpenedKeys(d.Secret, d.PreviousSecret, WebhookSignature.Key(secrets.Open(d.Secret, context)),
                d.PreviousSecret is { } previous ? WebhookSignature.Key(secrets.Open(previous, context)) : null);
            if (_keys.Count >= KeysCacheLimit) _keys.Clear();
            _keys[(d.TenantId, d.EndpointId)] = opened;
        }
        return opened.PreviousKey is { } previousKey && d.PreviousSecretExpiresAt > clock.GetUtcNow().UtcDateTime
            ? [opened.Key, previousKey]
            : [opened.Key];
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
