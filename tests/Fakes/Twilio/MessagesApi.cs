using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Crm.Delivery.Channels.Sms;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Crm.Fakes.Twilio;

/// <summary>
/// The request handlers of the fake: authenticate, apply a programmed behaviour, validate, create the
/// message, and record every request before its response is written (so a client that has its answer
/// always finds its request recorded).
/// </summary>
internal sealed class MessagesApi(
    string accountSid,
    string authToken,
    TwilioBehaviorQueue behaviors,
    long startTimestamp,
    CancellationToken stopping)
{
    private long _sequence;

    public RecordLog<TwilioRequest> Requests { get; } = new();

    public RecordLog<string> CreatedSids { get; } = new();

    public ConcurrentDictionary<string, TwilioMessage> MessagesBySid { get; } = new(StringComparer.Ordinal);

    /// <summary>POST /2010-04-01/Accounts/{accountSid}/Messages.json</summary>
    public async Task CreateAsync(HttpContext http)
    {
        var arrival = Arrive();
        var form = new TwilioRequestForm(await ReadFormAsync(http.Request).ConfigureAwait(false));
        var auth = BasicAuth.Check(http.Request, accountSid, authToken);
        Outcome outcome;
        try
        {
            outcome = await DecideCreateAsync(http, auth.Ok, form).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (stopping.IsCancellationRequested)
        {
            http.Abort();  // the fake is shutting down during a programmed delay
            return;
        }
        await RespondAsync(http, arrival, auth, form.Fields, outcome).ConfigureAwait(false);
    }

    /// <summary>GET /2010-04-01/Accounts/{accountSid}/Messages/{messageSid}.json</summary>
    public async Task FetchAsync(HttpContext http)
    {
        var arrival = Arrive();
        var auth = BasicAuth.Check(http.Request, accountSid, authToken);
        var sid = http.GetRouteValue("messageSid") as string ?? "";
        var outcome = !auth.Ok ? Outcome.For(TwilioError.Authenticate())
            : RouteAccount(http) != accountSid || !MessagesBySid.TryGetValue(sid, out var message)
                ? Outcome.For(TwilioError.NotFound(http.Request.Path))
                : Outcome.Created(200, message);
        await RespondAsync(http, arrival, auth, [], outcome).ConfigureAwait(false);
    }

    /// <summary>Anything else: Twilio's 404 JSON.</summary>
    public Task NotFoundAsync(HttpContext http) =>
        RespondAsync(http, Arrive(), BasicAuth.Check(http.Request, accountSid, authToken), [],
            Outcome.For(TwilioError.NotFound(http.Request.Path)));

    private async Task<Outcome> DecideCreateAsync(HttpContext http, bool authOk, TwilioRequestForm form)
    {
        if (!authOk)
        {
            return Outcome.For(TwilioError.Authenticate());
        }
        if (RouteAccount(http) != accountSid)
        {
            return Outcome.For(TwilioError.NotFound(http.Request.Path));
        }

        var behavior = behaviors.Take(form.To);
        var label = behavior?.ToString();
        while (behavior is DelayBehavior delay)
        {
            // Deliberately not http.RequestAborted: the real API keeps going when the client gives up.
            await Task.Delay(delay.Duration, stopping).ConfigureAwait(false);
            behavior = delay.Then;
        }
        switch (behavior)
        {
            case ErrorBehavior error:
                return Outcome.For(TwilioError.From(error, form.To)) with { Behavior = label };
            case DropBehavior:
                return Outcome.Dropped(label);
        }

        if (MessageRequestValidator.Validate(form) is { } invalid)
        {
            return Outcome.For(invalid) with { Behavior = label };
        }
        var message = Create(form);
        MessagesBySid[message.Sid] = message;
        CreatedSids.Add(message.Sid);
        return Outcome.Created(201, message) with { Behavior = label };
    }

    private TwilioMessage Create(TwilioRequestForm form)
    {
        var media = form.MediaUrls;
        var body = form.Body ?? "";
        return new TwilioMessage
        {
            // Real sids: "SM" (SMS) or "MM" (MMS) + 32 lowercase hex.
            Sid = (media.Count > 0 ? "MM" : "SM") + Guid.NewGuid().ToString("N"),
            AccountSid = accountSid,
            To = form.To!,
            From = string.IsNullOrEmpty(form.From) ? null : form.From,
            MessagingServiceSid = string.IsNullOrEmpty(form.MessagingServiceSid) ? null : form.MessagingServiceSid,
            Body = body,
            StatusCallback = form.StatusCallback,
            MediaUrls = media,
            Segments = SmsSegments.Count(body).Segments,
            DateCreated = DateTimeOffset.UtcNow,
            // A Messaging Service send starts as "accepted" (sender not chosen yet), a direct one as "queued".
            Status = string.IsNullOrEmpty(form.MessagingServiceSid) ? "queued" : "accepted",
        };
    }

    private async Task RespondAsync(
        HttpContext http, Arrival arrival, BasicAuth.Result auth, IReadOnlyList<KeyValuePair<string, string>> form, Outcome outcome)
    {
        Requests.Add(new TwilioRequest
        {
            Sequence = arrival.Sequence,
            ReceivedAt = arrival.At,
            Timestamp = arrival.Timestamp,
            SinceStart = Stopwatch.GetElapsedTime(startTimestamp, arrival.Timestamp),
            Method = http.Request.Method,
            Path = http.Request.Path,
            AccountSid = RouteAccount(http),
            AuthUser = auth.User,
            AuthOk = auth.Ok,
            Form = form,
            ResponseStatus = outcome.Drop ? 0 : outcome.Status,
            ErrorCode = outcome.Error?.Code,
            MessageSid = outcome.MessageSid,
            Behavior = outcome.Behavior,
            ClientAborted = http.RequestAborted.IsCancellationRequested,
        });

        if (outcome.Drop)
        {
            http.Abort();
            return;
        }
        var response = http.Response;
        response.StatusCode = outcome.Status;
        response.ContentType = "application/json; charset=utf-8";
        response.Headers["Twilio-Request-Id"] = "RQ" + Guid.NewGuid().ToString("N");
        if (outcome.Error?.RetryAfterSeconds is { } retryAfter)
        {
            response.Headers.RetryAfter = retryAfter.ToString(System.Globalization.CultureInfo.InvariantCulture);
        }
        if (outcome.Status == 401)
        {
            response.Headers.WWWAuthenticate = "Basic realm=\"Twilio API\"";
        }
        try
        {
            await response.WriteAsync(outcome.Json, http.RequestAborted).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            // The client left (e.g. its timeout fired during a programmed delay); already recorded.
        }
    }

    private Arrival Arrive() =>
        new(Interlocked.Increment(ref _sequence), DateTimeOffset.UtcNow, Stopwatch.GetTimestamp());

    private static string? RouteAccount(HttpContext http) => http.GetRouteValue("accountSid") as string;

    private static async Task<IReadOnlyList<KeyValuePair<string, string>>> ReadFormAsync(HttpRequest request)
    {
        if (!request.HasFormContentType)
        {
            return [];
        }
        var form = await request.ReadFormAsync().ConfigureAwait(false);
        return form.SelectMany(f => f.Value.Select(v => KeyValuePair.Create(f.Key, v ?? ""))).ToList();
    }

    private readonly record struct Arrival(long Sequence, DateTimeOffset At, long Timestamp);

    private sealed record Outcome(int Status, string Json, TwilioError? Error, string? MessageSid)
    {
        public string? Behavior { get; init; }

        public bool Drop { get; init; }

        public static Outcome For(TwilioError error) => new(error.HttpStatus, error.ToJson(), error, null);

        public static Outcome Created(int status, TwilioMessage message) =>
            new(status, JsonSerializer.Serialize(MessageResource.Of(message), TwilioJson.Options), null, message.Sid);

        public static Outcome Dropped(string? behavior) => new(0, "", null, null) { Behavior = behavior, Drop = true };
    }
}

/// <summary>HTTP Basic authentication with AccountSid:AuthToken, as the REST API requires.</summary>
internal static class BasicAuth
{
    public readonly record struct Result(string? User, bool Ok);

    public static Result Check(HttpRequest request, string accountSid, string authToken)
    {
        if (!AuthenticationHeaderValue.TryParse(request.Headers.Authorization, out var header)
            || !string.Equals(header.Scheme, "Basic", StringComparison.OrdinalIgnoreCase)
            || header.Parameter is null)
        {
            return new Result(null, false);
        }
        string decoded;
        try
        {
            decoded = Encoding.UTF8.GetString(Convert.FromBase64String(header.Parameter));
        }
        catch (FormatException)
        {
            return new Result(null, false);
        }
        var colon = decoded.IndexOf(':', StringComparison.Ordinal);
        if (colon < 0)
        {
            return new Result(decoded, false);
        }
        var user = decoded[..colon];
        return new Result(user, user == accountSid && decoded[(colon + 1)..] == authToken);
    }
}
