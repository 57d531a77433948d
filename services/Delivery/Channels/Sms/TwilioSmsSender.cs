using System.Collections.Frozen;
using System.Globalization;
using System.Net;
using Crm.BuildingBlocks.Net;
using Twilio.Clients;
using Twilio.Exceptions;
using Twilio.Http;
using Twilio.Rest.Api.V2010.Account;

namespace Crm.Delivery.Channels.Sms;

/// <summary>
/// Sends SMS through Twilio's Messages API (2010-04-01) with Twilio's own library (<see cref="MessageResource"/>,
/// <see cref="TwilioRestClient"/>) over an <see cref="System.Net.Http.HttpClient"/> this service controls: Twilio's
/// <see cref="SystemNetHttpClient"/> wraps a client whose only handler is <see cref="AttemptHandler"/>, which sends
/// through the service's client (outbound guard, handler lifetimes), to the account's base URL, within the
/// attempt's timeout, and remembers what the library does not hand back (the HTTP status, Retry-After, whether
/// the body went out). Rate limits (429) and server errors are retried inside the call; anything the provider
/// may already have acted on is never retried (see <see cref="SendOutcomeKind.Unconfirmed"/>).
/// </summary>
/// <remarks>
/// Takes an <see cref="System.Net.Http.HttpClient"/> rather than the factory so the module can register it as a
/// typed client. One client serves every tenant: credentials travel on each request, never on the client. Leave
/// the client's own <see cref="System.Net.Http.HttpClient.Timeout"/> infinite (the module does): the per-request
/// timeout is enforced here, where a timeout can be told apart from the caller's cancellation.
/// </remarks>
public sealed class TwilioSmsSender : ISmsSender
{
    /// <summary>The provider account kind this sender serves.</summary>
    public const string Kind = "twilio";

    // The number itself cannot take our SMS (invalid, opted out with STOP, landline): Contacts marks the channel.
    private static readonly FrozenSet<int> UnreachableCodes = FrozenSet.Create(21211, 21610, 21614);

    private readonly System.Net.Http.HttpClient _http;
    private readonly RetryPolicy _retry;

    public TwilioSmsSender(System.Net.Http.HttpClient http, RetryPolicy retry)
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
        using var attempt = new AttemptHandler(_http, twilio, timeout.Token);
        using var http = new System.Net.Http.HttpClient(attempt, disposeHandler: false) { Timeout = Timeout.InfiniteTimeSpan };
        var client = new TwilioRestClient(twilio.AccountSid, twilio.AuthToken, httpClient: new SystemNetHttpClient(http));
        try
        {
            var message = await MessageResource.CreateAsync(twilio.Options(sms), client).ConfigureAwait(false);
            return ProviderAttempt.Final(new SendOutcome(SendOutcomeKind.Sent,
                message.Sid is null ? $"Twilio answered {attempt.Status} without a message sid" : $"Twilio accepted ({message.Status?.ToString() ?? "queued"})",
                ProviderMessageId: message.Sid));
        }
        catch (Newtonsoft.Json.JsonException) when (attempt.Status is >= 200 and < 300)
        {
            // A 2xx whose body we cannot read still means "created"; only the sid is lost.
            return ProviderAttempt.Final(new SendOutcome(SendOutcomeKind.Sent, $"Twilio answered {attempt.Status} without a message sid"));
        }
        catch (ApiException e)
        {
            return Classify(attempt, e);
        }
        catch (ApiConnectionException e) when (e.InnerException is OperationCanceledException && ct.IsCancellationRequested)
        {
            throw new OperationCanceledException("The send was cancelled.", e.InnerException, ct);
        }
        catch (ApiConnectionException e) when (e.InnerException is OperationCanceledException)
        {
            // Our timeout. Once the body went out Twilio may have created the message, and a retry could send it twice.
            return attempt.SendStarted
                ? ProviderAttempt.Final(new SendOutcome(SendOutcomeKind.Unconfirmed,
                    $"no answer from Twilio within {_retry.Options.RequestTimeout.TotalSeconds:0.###} s; the message may have been accepted"))
                : ProviderAttempt.Retry("timed out before the request was sent");
        }
        catch (ApiConnectionException e) when (e.InnerException is HttpRequestException { } inner && inner.GetBaseException() is OutboundAddressRefusedException refused)
        {
            return ProviderAttempt.Final(new SendOutcome(SendOutcomeKind.Permanent, $"Twilio base URL refused: {refused.Message}"));
        }
        catch (ApiConnectionException e) when (e.InnerException is HttpRequestException inner)
        {
            // The outer message is generic ("An error occurred while sending the request"); the cause is inside.
            var cause = $"({inner.HttpRequestError}): {inner.GetBaseException().Message}";
            return attempt.SendStarted
                ? ProviderAttempt.Final(new SendOutcome(SendOutcomeKind.Unconfirmed, $"connection lost after the request was sent {cause}"))
                : ProviderAttempt.Retry($"could not reach Twilio {cause}");
        }
    }

    private ProviderAttempt Classify(AttemptHandler attempt, ApiException e)
    {
        var status = attempt.Status;
        // Without a Twilio error body the library reports code 0 (e.g. an HTML page from a proxy).
        int? code = e.Code != 0 ? e.Code : null;
        var reason = code is { } c
            ? string.Create(CultureInfo.InvariantCulture, $"Twilio {status} error {c}: {e.Message}")
            : string.Create(CultureInfo.InvariantCulture, $"Twilio {status} without an error body");
        if (status == (int)HttpStatusCode.TooManyRequests || status >= 500)
        {
            var retryAfter = _retry.RetryAfter(attempt.RetryAfter);
            if (retryAfter is { } wait && !_retry.CanWaitFor(wait))
            {
                // Too long to hold this call: the pipeline defers the message instead.
                return ProviderAttempt.Final(new SendOutcome(SendOutcomeKind.Transient, reason, ProviderErrorCode: code, RetryAfter: wait));
            }
            return ProviderAttempt.Retry(reason, retryAfter, code);
        }
        return ProviderAttempt.Final(new SendOutcome(SendOutcomeKind.Permanent, reason,
            ProviderErrorCode: code, RecipientUnreachable: code is { } unreachable && UnreachableCodes.Contains(unreachable)));
    }

    /// <summary>
    /// The one handler of an attempt's client: forwards the library's request through the service's client to
    /// the account's base URL, within the attempt's timeout (the library passes no token), and keeps the HTTP
    /// status and Retry-After (the library's exceptions drop them) and whether the body started going out: that
    /// happens only once a connection is up and the request headers are out, so before it nothing can have
    /// reached Twilio and a retry is safe. (Conservative: "started" may still be short of Twilio having read it.)
    /// </summary>
    private sealed class AttemptHandler(System.Net.Http.HttpClient http, TwilioAccount twilio, CancellationToken timeout) : HttpMessageHandler
    {
        private int _started;

        public bool SendStarted => Volatile.Read(ref _started) == 1;

        public int Status { get; private set; }

        public System.Net.Http.Headers.RetryConditionHeaderValue? RetryAfter { get; private set; }

        protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(timeout, cancellationToken);
            // A request reaching a handler counts as sent for its client, so the service's client gets a copy.
            using var forward = new HttpRequestMessage(request.Method, twilio.Rebase(request.RequestUri!))
            {
                Content = request.Content is { } content ? new SendTrackingContent(content, () => Volatile.Write(ref _started, 1)) : null,
            };
            foreach (var header in request.Headers) forward.Headers.TryAddWithoutValidation(header.Key, header.Value);
            var response = await http.SendAsync(forward, linked.Token).ConfigureAwait(false);
            Status = (int)response.StatusCode;
            RetryAfter = response.Headers.RetryAfter;
            return response;
        }
    }
}
