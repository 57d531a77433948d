using System.Diagnostics;
using Crm.Delivery.Channels.Sms;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;

namespace Crm.Fakes.Twilio;

/// <summary>
/// A real HTTP/1.1 server (Kestrel on 127.0.0.1, ephemeral port) implementing Twilio's Messages API
/// (2010-04-01): <c>POST /2010-04-01/Accounts/{AccountSid}/Messages.json</c> (form-encoded To, From or
/// MessagingServiceSid, Body, StatusCallback, MediaUrl) and <c>GET .../Messages/{Sid}.json</c>, with HTTP
/// Basic auth. Records every request; failures are programmed with <see cref="Enqueue"/> and
/// <see cref="EnqueueFor"/>. Point a client (or the twilio-csharp SDK's base URL) at <see cref="BaseUri"/>.
/// </summary>
/// <remarks>
/// Faithful details worth knowing: a send through a Messaging Service answers status "accepted" and
/// num_segments "0" (Twilio documents that segments are unknown at that point); an MMS sid starts "MM".
/// </remarks>
public sealed class FakeTwilioServer : IAsyncDisposable
{
    public const string DefaultAccountSid = "AC0123456789abcdef0123456789abcdef";
    public const string DefaultAuthToken = "f4ke0123456789abcdef0123456789ab";

    /// <summary>Pass as <c>times</c> for a behaviour that never runs out.</summary>
    public const int Forever = int.MaxValue;

    private readonly TwilioBehaviorQueue _behaviors = new();
    private readonly CancellationTokenSource _stopping = new();
    private readonly HttpClient _callbackClient = new() { Timeout = TimeSpan.FromSeconds(10) };
    private readonly MessagesApi _api;
    private readonly int _port;
    private WebApplication? _app;
    private Uri? _baseUri;

    /// <param name="port">0 (default): an ephemeral port, read it from <see cref="Port"/>. A fixed port suits the local demo.</param>
    public FakeTwilioServer(string accountSid = DefaultAccountSid, string authToken = DefaultAuthToken, int port = 0)
    {
        _port = port;
        ArgumentException.ThrowIfNullOrEmpty(accountSid);
        ArgumentException.ThrowIfNullOrEmpty(authToken);
        AccountSid = accountSid;
        AuthToken = authToken;
        _api = new MessagesApi(accountSid, authToken, _behaviors, Stopwatch.GetTimestamp(), _stopping.Token);
    }

    public string AccountSid { get; }

    public string AuthToken { get; }

    /// <summary>"http://127.0.0.1:{port}/", known once <see cref="StartAsync"/> returned.</summary>
    public Uri BaseUri => _baseUri ?? throw new InvalidOperationException("Call StartAsync first.");

    public int Port => BaseUri.Port;

    /// <summary>The create-message URL for <see cref="AccountSid"/>.</summary>
    public Uri MessagesUri => new(BaseUri, $"2010-04-01/Accounts/{AccountSid}/Messages.json");

    /// <summary>Every request received so far, whatever its outcome (a snapshot, in order of recording).</summary>
    public IReadOnlyList<TwilioRequest> Requests => _api.Requests.Snapshot();

    /// <summary>Messages created so far, in creation order, with their latest status.</summary>
    public IReadOnlyList<TwilioMessage> Messages => _api.CreatedSids.Snapshot().Select(sid => _api.MessagesBySid[sid]).ToList();

    public async Task StartAsync(CancellationToken cancellationToken = default)
    {
        if (_app is not null)
        {
            throw new InvalidOperationException("Already started.");
        }
        // The empty builder reads no appsettings/environment (ASPNETCORE_URLS etc.) and logs nothing,
        // so the fake behaves the same on every machine.
        var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions());
        builder.WebHost.UseKestrelCore();
        builder.Services.AddRoutingCore();
        var app = builder.Build();
        app.Urls.Add($"http://127.0.0.1:{_port}");
        app.MapPost("/2010-04-01/Accounts/{accountSid}/Messages.json", _api.CreateAsync);
        app.MapGet("/2010-04-01/Accounts/{accountSid}/Messages/{messageSid}.json", _api.FetchAsync);
        app.MapFallback(_api.NotFoundAsync);
        await app.StartAsync(cancellationToken).ConfigureAwait(false);
        _app = app;
        // Kestrel replaces port 0 with the port it actually bound.
        _baseUri = new Uri(app.Urls.Single().TrimEnd('/') + "/");
    }

    /// <summary>Waits until at least <paramref name="count"/> requests were recorded; returns them all.</summary>
    public Task<IReadOnlyList<TwilioRequest>> WaitForRequestsAsync(
        int count, TimeSpan timeout, CancellationToken cancellationToken = default) =>
        _api.Requests.WaitForCountAsync(
            count, timeout, got => string.Join("; ", got.Select(r => $"#{r.Sequence} {r.ResponseStatus} {r.ErrorCode}")),
            cancellationToken);

    /// <summary>Waits until at least <paramref name="count"/> messages were created; returns them all.</summary>
    public async Task<IReadOnlyList<TwilioMessage>> WaitForMessagesAsync(
        int count, TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        var sids = await _api.CreatedSids.WaitForCountAsync(
            count, timeout, got => string.Join(", ", got), cancellationToken).ConfigureAwait(false);
        return sids.Select(sid => _api.MessagesBySid[sid]).ToList();
    }

    /// <summary>
    /// The next <paramref name="times"/> create requests (any recipient) get <paramref name="behavior"/>;
    /// after that, requests succeed again. E.g. <c>Enqueue(TwilioBehavior.TooManyRequests(2), times: 3)</c>.
    /// </summary>
    public void Enqueue(TwilioBehavior behavior, int times = 1) => _behaviors.Enqueue(behavior, times, to: null);

    /// <summary>
    /// The next <paramref name="times"/> create requests whose To is <paramref name="to"/> (exact E.164 string)
    /// get <paramref name="behavior"/>; consulted before the global queue. Use <see cref="Forever"/> for
    /// "always", e.g. <c>EnqueueFor("+821012345678", TwilioBehavior.Unsubscribed(), FakeTwilioServer.Forever)</c>.
    /// </summary>
    public void EnqueueFor(string to, TwilioBehavior behavior, int times = 1)
    {
        ArgumentException.ThrowIfNullOrEmpty(to);
        _behaviors.Enqueue(behavior, times, to);
    }

    /// <summary>Forgets programmed behaviours not served yet.</summary>
    public void ClearBehaviors() => _behaviors.Clear();

    /// <summary>Forgets recorded requests (created messages stay fetchable and callable back).</summary>
    public void ClearRequests() => _api.Requests.Clear();

    /// <summary>
    /// Posts a status callback for a created message to the StatusCallback URL its request carried, as
    /// Twilio does: form fields MessageSid, SmsSid, MessageStatus, SmsStatus, To, From, AccountSid,
    /// ApiVersion (+ MessagingServiceSid, ErrorCode when set), signed with X-Twilio-Signature.
    /// </summary>
    /// <param name="status">queued, sending, sent, delivered, undelivered, failed, read...</param>
    /// <param name="errorCode">e.g. 30003 (unreachable handset) or 30007 (carrier filtered) for undelivered/failed.</param>
    /// <param name="url">Overrides the StatusCallback of the original request (e.g. to test a bad signature URL).</param>
    public async Task<TwilioCallbackResult> SendStatusCallbackAsync(
        string messageSid,
        string status = "delivered",
        int? errorCode = null,
        string? url = null,
        CancellationToken cancellationToken = default)
    {
        if (!_api.MessagesBySid.TryGetValue(messageSid, out var message))
        {
            throw new ArgumentException($"No message {messageSid} was created.", nameof(messageSid));
        }
        var target = url ?? message.StatusCallback
            ?? throw new InvalidOperationException($"Message {messageSid} was sent without a StatusCallback.");

        var parameters = CallbackParameters(message, status, errorCode);
        var signature = TwilioSignature.Compute(target, parameters, AuthToken);
        using var request = new HttpRequestMessage(HttpMethod.Post, target)
        {
            Content = new FormUrlEncodedContent(parameters),
        };
        request.Headers.Add(TwilioSignature.HeaderName, signature);
        request.Headers.Add("I-Twilio-Idempotency-Token", Guid.NewGuid().ToString());
        request.Headers.UserAgent.ParseAdd("TwilioProxy/1.1");
        using var response = await _callbackClient.SendAsync(request, cancellationToken).ConfigureAwait(false);

        _api.MessagesBySid[messageSid] = message with { Status = status, ErrorCode = errorCode };
        return new TwilioCallbackResult(target, parameters, signature, (int)response.StatusCode);
    }

    public async ValueTask DisposeAsync()
    {
        await _stopping.CancelAsync().ConfigureAwait(false);  // ends programmed delays first
        if (_app is not null)
        {
            using var grace = new CancellationTokenSource(TimeSpan.FromSeconds(5));
            await _app.StopAsync(grace.Token).ConfigureAwait(false);
            await _app.DisposeAsync().ConfigureAwait(false);
        }
        _callbackClient.Dispose();
        _stopping.Dispose();
    }

    private List<KeyValuePair<string, string>> CallbackParameters(TwilioMessage message, string status, int? errorCode)
    {
        var parameters = new List<KeyValuePair<string, string>>
        {
            new("SmsSid", message.Sid),
            new("SmsStatus", status),
            new("MessageStatus", status),
            new("To", message.To),
            new("MessageSid", message.Sid),
            new("AccountSid", message.AccountSid),
            new("From", message.From ?? ""),
            new("ApiVersion", "2010-04-01"),
        };
        if (message.MessagingServiceSid is not null)
        {
            parameters.Add(new("MessagingServiceSid", message.MessagingServiceSid));
        }
        if (errorCode is not null)
        {
            parameters.Add(new("ErrorCode", errorCode.Value.ToString(System.Globalization.CultureInfo.InvariantCulture)));
        }
        return parameters;
    }
}
