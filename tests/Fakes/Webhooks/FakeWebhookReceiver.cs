using System.Collections.Concurrent;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;

namespace Crm.Fakes.Webhooks;

/// <summary>A request the receiver got: the Standard Webhooks headers and the raw body, exactly as sent.</summary>
public sealed record ReceivedWebhook(string Path, string? Id, string? Timestamp, string? Signature, string ContentType, string Body, int AnsweredStatus, DateTimeOffset At);

/// <summary>
/// A customer's webhook receiver: a real HTTP/1.1 server (Kestrel on 127.0.0.1, ephemeral port) that accepts
/// POSTs on any path, records them, and answers 200 unless told otherwise (<see cref="Enqueue"/>: 500, 429 or
/// 503 with Retry-After, 410 Gone, a redirect). It does not verify signatures: the tests do, with their own verifier.
/// </summary>
public sealed class FakeWebhookReceiver : IAsyncDisposable
{
    private readonly ConcurrentQueue<(int Status, int? RetryAfterSeconds, string? Location)> _answers = new();
    private readonly List<ReceivedWebhook> _received = [];
    private readonly SemaphoreSlim _arrived = new(0);
    private WebApplication? _app;

    /// <summary>"http://127.0.0.1:{port}/", known once <see cref="StartAsync"/> returned.</summary>
    public Uri BaseUri { get; private set; } = null!;

    /// <summary>Answers 200 with no body when nothing is queued. Set false to only count (the benchmark's receiver).</summary>
    public bool Record { get; set; } = true;

    private long _count;

    public long Count => Interlocked.Read(ref _count);

    public IReadOnlyList<ReceivedWebhook> Received
    {
        get { lock (_received) return _received.ToList(); }
    }

    /// <summary>The next <paramref name="times"/> requests get this answer instead of 200.</summary>
    public void Enqueue(int status, int times = 1, int? retryAfterSeconds = null, string? location = null)
    {
        for (var i = 0; i < times; i++) _answers.Enqueue((status, retryAfterSeconds, location));
    }

    public async Task StartAsync()
    {
        var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions());
        builder.WebHost.UseKestrelCore();
        builder.Services.AddRoutingCore();
        _app = builder.Build();
        _app.Urls.Add("http://127.0.0.1:0");
        _app.MapPost("/{**path}", HandleAsync);
        await _app.StartAsync();
        BaseUri = new Uri(_app.Urls.First().TrimEnd('/') + "/");
    }

    private async Task HandleAsync(HttpContext context)
    {
        using var reader = new StreamReader(context.Request.Body);
        var body = await reader.ReadToEndAsync();
        var (status, retryAfter, location) = _answers.TryDequeue(out var a) ? a : (200, null, null);
        if (Record)
        {
            var h = context.Request.Headers;
            lock (_received)
                _received.Add(new ReceivedWebhook(context.Request.Path, h["webhook-id"], h["webhook-timestamp"], h["webhook-signature"],
                    context.Request.ContentType ?? "", body, status, DateTimeOffset.UtcNow));
        }
        Interlocked.Increment(ref _count);
        _arrived.Release();
        context.Response.StatusCode = status;
        if (retryAfter is { } seconds) context.Response.Headers.RetryAfter = seconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
        if (location is not null) context.Response.Headers.Location = location;
    }

    /// <summary>Waits until at least <paramref name="count"/> requests arrived in all.</summary>
    public async Task WaitForAsync(int count, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(30));
        while (Count < count)
        {
            var left = deadline - DateTime.UtcNow;
            if (left <= TimeSpan.Zero) throw new TimeoutException($"The webhook receiver got {Count} of {count} requests.");
            await _arrived.WaitAsync(left);
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_app is not null) await _app.DisposeAsync();
    }
}
