using System.Collections.Frozen;
using System.Globalization;
using System.Net;
using System.Text.Json;
using Crm.BuildingBlocks.Net;

namespace Crm.Delivery.Channels.Sms;

/// <summary>
/// Sends SMS through Twilio's Messages API (2010-04-01) over plain HTTP, since there is no Twilio SDK in
/// the package set. Rate limits (429) and server errors are retried inside the call; anything the
/// provider may already have acted on is never retried (see <see cref="SendOutcomeKind.Unconfirmed"/>).
/// </summary>
/// <remarks>
/// Takes an <see cref="HttpClient"/> rather than the factory so the module can register it as a typed client
/// and the factory keeps managing handler lifetimes. One
/// client serves every tenant: credentials travel on each request, never on the client. Leave the client's
/// own <see cref="HttpClient.Timeout"/> infinite (the module does): the
/// per-request timeout is enforced here, where a timeout can be told apart from the caller's cancellation.
/// </remarks>
public sealed class TwilioSmsSender : ISmsSender
{
    /// <summary>The provider account kind this sender serves.</summary>
    public const string Kind = "twilio";

    // The number itself cannot take our SMS (invalid, opted out with STOP, landline): Contacts marks the channel.
    private static readonly FrozenSet<int> UnreachableCodes = FrozenSet.Create(21211, 21610, 21614);

    private readonly HttpClient _http;
    private readonly RetryPolicy _retry;

    public TwilioSmsSender(HttpClient http, RetryPolicy retry)
    {
        ArgumentNullException.ThrowIfNull(http);
        ArgumentNullException.ThrowIfNull(retry);
        _http = http;
        _retry = retry;
    }

    /// <exception cref="OperationCanceledException">Only when <paramref name="ct"/> was cancelled.</exception>
    public async Task<SendOutcome> SendAsync(ProviderAccountConfig account, OutgoingSms sms, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(account);
        ArgumentNullException.ThrowIfNull(sms);
        var (twilio, problem) = TwilioAccount.Read(account);
        if (twilio is null)
        {
            return new SendOutcome(SendOutcomeKind.Permanent, $"Twilio account {account.AccountId} is misconfigured: {problem}", Attempts: 0);
        }

        return await _retry.RunAsync(token => AttemptAsync(twilio, sms, token), ct).ConfigureAwait(false);
    }

    private async Task<ProviderAttempt> AttemptAsync(TwilioAccount twilio, OutgoingSms sms, CancellationToken ct)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(_retry.Options.RequestTimeout);
        using var content = new SendTrackingFormContent(twilio.Form(sms));
        using var request = new HttpRequestMessage(HttpMethod.Post, twilio.MessagesUri) { Content = content };
        request.Headers.Authorization = twilio.Authorization;
        try
        {
            using var response = await _http.SendAsync(request, timeout.Token).ConfigureAwait(false);
            var body = await response.Content.ReadAsStringAsync(timeout.Token).ConfigureAwait(false);
            return Classify(response, TwilioResponseBody.Parse(body));
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            // Our timeout (or the HttpClient's own). Once the body went out Twilio may have created the
            // message, and a retry could send it twice.
            return content.SendStarted
                ? ProviderAttempt.Final(new SendOutcome(SendOutcomeKind.Unconfirmed,
                    $"no answer from Twilio within {_retry.Options.RequestTimeout.TotalSeconds:0.###} s; the message may have been accepted"))
                : ProviderAttempt.Retry("timed out before the request was sent");
        }
        catch (HttpRequestException e) when (e.GetBaseException() is OutboundAddressRefusedException refused)
        {
            return ProviderAttempt.Final(new SendOutcome(SendOutcomeKind.Permanent, $"Twilio base URL refused: {refused.Message}"));
        }
        catch (HttpRequestException e)
        {
            // The outer message is generic ("An error occurred while sending the request"); the cause is inside.
            var cause = $"({e.HttpRequestError}): {e.GetBaseException().Message}";
            return content.SendStarted
                ? ProviderAttempt.Final(new SendOutcome(SendOutcomeKind.Unconfirmed, $"connection lost after the request was sent {cause}"))
                : ProviderAttempt.Retry($"could not reach Twilio {cause}");
        }
    }

    private ProviderAttempt Classify(HttpResponseMessage response, TwilioResponseBody body)
    {
        var status = (int)response.StatusCode;
        if (response.IsSuccessStatusCode)
        {
            // A 2xx whose body we cannot read still means "created"; only the sid is lost.
            return ProviderAttempt.Final(new SendOutcome(SendOutcomeKind.Sent,
                body.Sid is null ? $"Twilio answered {status} without a message sid" : $"Twilio accepted ({body.MessageStatus ?? "queued"})",
                ProviderMessageId: body.Sid));
        }

        var reason = Describe(status, body);
        if (response.StatusCode == HttpStatusCode.TooManyRequests || status >= 500)
        {
            var retryAfter = _retry.RetryAfter(response.Headers.RetryAfter);
            if (retryAfter is { } wait && !_retry.CanWaitFor(wait))
            {
                // Too long to hold this call: the pipeline defers the message instead.
                return ProviderAttempt.Final(new SendOutcome(SendOutcomeKind.Transient, reason,
                    ProviderErrorCode: body.Code, RetryAfter: wait));
            }
            return ProviderAttempt.Retry(reason, retryAfter, body.Code);
        }

        return ProviderAttempt.Final(new SendOutcome(SendOutcomeKind.Permanent, reason,
            ProviderErrorCode: body.Code, RecipientUnreachable: body.Code is { } code && UnreachableCodes.Contains(code)));
    }

    private static string Describe(int status, TwilioResponseBody body) =>
        body.Code is { } code
            ? string.Create(CultureInfo.InvariantCulture, $"Twilio {status} error {code}: {body.Message}")
            : string.Create(CultureInfo.InvariantCulture, $"Twilio {status} without an error body");

    /// <summary>
    /// The form body, remembering whether the handler started writing it: that happens only once a
    /// connection is up and the request headers are out, so before it nothing can have reached Twilio
    /// and a retry is safe. (Conservative: "started" may still be short of Twilio having read it.)
    /// </summary>
    private sealed class SendTrackingFormContent(IEnumerable<KeyValuePair<string, string>> fields) : FormUrlEncodedContent(fields)
    {
        private int _started;

        public bool SendStarted => Volatile.Read(ref _started) == 1;

        protected override void SerializeToStream(Stream stream, TransportContext? context, CancellationToken cancellationToken)
        {
            Volatile.Write(ref _started, 1);
            base.SerializeToStream(stream, context, cancellationToken);
        }

        protected override Task SerializeToStreamAsync(Stream stream, TransportContext? context)
        {
            Volatile.Write(ref _started, 1);
            return base.SerializeToStreamAsync(stream, context);
        }

        protected override Task SerializeToStreamAsync(Stream stream, TransportContext? context, CancellationToken cancellationToken)
        {
            Volatile.Write(ref _started, 1);
            return base.SerializeToStreamAsync(stream, context, cancellationToken);
        }
    }
}

/// <summary>
/// The fields of a Messages API answer that matter here. Read by hand because "status" is the message
/// status (a string) on success but the HTTP status (a number) in an error body.
/// </summary>
internal readonly record struct TwilioResponseBody(string? Sid, string? MessageStatus, int? Code, string? Message)
{
    public static TwilioResponseBody Parse(string json)
    {
        try
        {
            using var document = JsonDocument.Parse(json);
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                return default;
            }
            return new TwilioResponseBody(Text(root, "sid"), Text(root, "status"), Number(root, "code"), Text(root, "message"));
        }
        catch (JsonException)
        {
            return default;  // e.g. an HTML error page from a proxy in front of the API
        }
    }

    private static string? Text(JsonElement root, string name) =>
        root.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString() : null;

    private static int? Number(JsonElement root, string name) =>
        root.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.Number && value.TryGetInt32(out var number)
            ? number
            : null;
}
