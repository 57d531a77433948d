using Crm.Delivery.Channels;
using Crm.Delivery.Channels.Sms;
using Crm.Fakes.Twilio;

namespace Crm.Delivery.Tests.Channels;

/// <summary>TwilioSmsSender against the loopback Twilio fake, over real HTTP.</summary>
public sealed class TwilioSmsSenderTests : IAsyncLifetime, IDisposable
{
    private const string To = "+821012345678";
    private const string From = "+15005550006";
    private const string StatusCallback = "https://crm.test/hooks/twilio/status";
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(10);

    private readonly FakeTwilioServer _twilio = new();
    private readonly HttpClient _http = new() { Timeout = Timeout.InfiniteTimeSpan };
    private readonly RecordedRetries _retries = new();

    public Task InitializeAsync() => _twilio.StartAsync();

    public Task DisposeAsync() => _twilio.DisposeAsync().AsTask();

    public void Dispose() => _http.Dispose();

    [Fact]
    public async Task A_sent_SMS_returns_the_sid_and_carries_To_From_Body_StatusCallback_and_Basic_auth()
    {
        var outcome = await SendAsync(new OutgoingSms(To, "주문하신 상품이 발송되었습니다."));

        Assert.Equal(SendOutcomeKind.Sent, outcome.Kind);
        Assert.Equal(1, outcome.Attempts);
        var message = Assert.Single(_twilio.Messages);
        Assert.Equal(message.Sid, outcome.ProviderMessageId);
        Assert.StartsWith("SM", outcome.ProviderMessageId, StringComparison.Ordinal);
        var request = Assert.Single(_twilio.Requests);
        Assert.Equal(To, request.To);
        Assert.Equal(From, request.From);
        Assert.Null(request.MessagingServiceSid);
        Assert.Equal("주문하신 상품이 발송되었습니다.", request.Body);
        Assert.Equal(StatusCallback, request.StatusCallback);
        Assert.Equal(_twilio.AccountSid, request.AuthUser);
        Assert.True(request.AuthOk);
        Assert.Equal($"/2010-04-01/Accounts/{_twilio.AccountSid}/Messages.json", request.Path);
    }

    [Fact]
    public async Task A_Messaging_Service_replaces_From()
    {
        const string service = "MG0123456789abcdef0123456789abcdef";
        var account = Account(settings => { settings.Remove("from"); settings["messaging_service_sid"] = service; });

        var outcome = await Sender().SendAsync(account, new OutgoingSms(To, "hello"), CancellationToken.None);

        Assert.Equal(SendOutcomeKind.Sent, outcome.Kind);
        var request = Assert.Single(_twilio.Requests);
        Assert.Equal(service, request.MessagingServiceSid);
        Assert.Null(request.From);
    }

    [Fact]
    public async Task A_71_character_Korean_body_is_two_segments_at_Twilio_and_in_SmsSegments()
    {
        var body = string.Concat(Enumerable.Repeat("봄맞이 세일 최대 오십 퍼센트 할인 ", 5))[..71];
        Assert.Equal(71, body.Length);

        var outcome = await SendAsync(new OutgoingSms(To, body));

        Assert.Equal(SendOutcomeKind.Sent, outcome.Kind);
        Assert.Equal(2, Assert.Single(_twilio.Messages).Segments);
        Assert.Equal(new SmsSegmentCount(SmsEncoding.Ucs2, 2, 71), SmsSegments.Count(body));
    }

    [Fact]
    public async Task A_429_with_Retry_After_1_is_waited_out_and_the_message_created_once()
    {
        _twilio.Enqueue(TwilioBehavior.TooManyRequests(retryAfterSeconds: 1));

        var outcome = await SendAsync(new OutgoingSms(To, "hello"));

        Assert.Equal(SendOutcomeKind.Sent, outcome.Kind);
        Assert.Equal(2, outcome.Attempts);
        Assert.Equal([TimeSpan.FromSeconds(1)], _retries.Delays);
        Assert.Equal(outcome.ProviderMessageId, Assert.Single(_twilio.Messages).Sid);
        Assert.Equal([429, 201], _twilio.Requests.Select(r => r.ResponseStatus));
    }

    [Fact]
    public async Task Two_503s_are_retried_with_jittered_exponential_backoff()
    {
        _twilio.Enqueue(TwilioBehavior.ServerError(503), times: 2);

        var outcome = await SendAsync(new OutgoingSms(To, "hello"));

        Assert.Equal(SendOutcomeKind.Sent, outcome.Kind);
        Assert.Equal(3, outcome.Attempts);
        Assert.Single(_twilio.Messages);
        Assert.Equal([503, 503, 201], _twilio.Requests.Select(r => r.ResponseStatus));
        var delays = _retries.Delays;
        Assert.Equal(2, delays.Count);
        Assert.InRange(delays[0], TimeSpan.Zero, _retries.Options.BaseDelay);
        Assert.InRange(delays[1], TimeSpan.Zero, _retries.Options.BaseDelay * 2);
    }

    [Fact]
    public async Task A_Retry_After_beyond_MaxRetryAfter_returns_Transient_at_once()
    {
        _twilio.Enqueue(TwilioBehavior.TooManyRequests(retryAfterSeconds: 30));

        var outcome = await SendAsync(new OutgoingSms(To, "hello"));

        Assert.Equal(SendOutcomeKind.Transient, outcome.Kind);
        Assert.Equal(TimeSpan.FromSeconds(30), outcome.RetryAfter);
        Assert.Equal(20429, outcome.ProviderErrorCode);
        Assert.Equal(1, outcome.Attempts);
        Assert.Empty(_retries.Delays);
        Assert.Single(_twilio.Requests);
        Assert.Empty(_twilio.Messages);
    }

    [Fact]
    public async Task Rate_limiting_that_never_ends_gives_up_after_MaxAttempts_keeping_Retry_After()
    {
        _twilio.Enqueue(TwilioBehavior.TooManyRequests(retryAfterSeconds: 1), FakeTwilioServer.Forever);

        var outcome = await SendAsync(new OutgoingSms(To, "hello"));

        Assert.Equal(SendOutcomeKind.Transient, outcome.Kind);
        Assert.Equal(4, outcome.Attempts);
        Assert.Equal(TimeSpan.FromSeconds(1), outcome.RetryAfter);
        Assert.Equal(4, _twilio.Requests.Count);
    }

    [Fact]
    public async Task An_unsubscribed_recipient_21610_is_permanent_and_unreachable()
    {
        _twilio.EnqueueFor(To, TwilioBehavior.Unsubscribed(), FakeTwilioServer.Forever);

        var outcome = await SendAsync(new OutgoingSms(To, "hello"));

        Assert.Equal(SendOutcomeKind.Permanent, outcome.Kind);
        Assert.True(outcome.RecipientUnreachable);
        Assert.Equal(21610, outcome.ProviderErrorCode);
        Assert.Contains("unsubscribed", outcome.Reason, StringComparison.Ordinal);
        Assert.Single(_twilio.Requests);
    }

    [Fact]
    public async Task An_invalid_To_21211_is_permanent_and_unreachable()
    {
        // Not E.164: the fake, like Twilio, answers 400 / 21211.
        var outcome = await SendAsync(new OutgoingSms("010-1234-5678", "hello"));

        Assert.Equal(SendOutcomeKind.Permanent, outcome.Kind);
        Assert.True(outcome.RecipientUnreachable);
        Assert.Equal(21211, outcome.ProviderErrorCode);
        Assert.Single(_twilio.Requests);
    }

    [Fact]
    public async Task A_wrong_auth_token_20003_is_permanent_but_not_the_recipients_fault()
    {
        var account = Account(secret: "wrong-token");

        var outcome = await Sender().SendAsync(account, new OutgoingSms(To, "hello"), CancellationToken.None);

        Assert.Equal(SendOutcomeKind.Permanent, outcome.Kind);
        Assert.False(outcome.RecipientUnreachable);
        Assert.Equal(20003, outcome.ProviderErrorCode);
        Assert.False(Assert.Single(_twilio.Requests).AuthOk);
    }

    [Fact]
    public async Task A_timeout_after_the_request_was_sent_is_Unconfirmed_and_never_retried()
    {
        _retries.Options.RequestTimeout = TimeSpan.FromSeconds(1);
        _twilio.Enqueue(TwilioBehavior.Delay(TimeSpan.FromSeconds(2)));

        var outcome = await SendAsync(new OutgoingSms(To, "hello"));

        Assert.Equal(SendOutcomeKind.Unconfirmed, outcome.Kind);
        Assert.Equal(1, outcome.Attempts);
        Assert.Null(outcome.ProviderMessageId);
        // The fake finishes its delay and records the request: it was the only one, and (as at Twilio)
        // the message was created although we never heard back, which is why it must not be retried.
        var request = Assert.Single(await _twilio.WaitForRequestsAsync(1, Wait));
        Assert.True(request.ClientAborted);
        Assert.Single(_twilio.Messages);
        Assert.Single(_twilio.Requests);
    }

    [Fact]
    public async Task A_connection_dropped_after_the_request_was_sent_is_Unconfirmed()
    {
        _twilio.Enqueue(TwilioBehavior.DropConnection());

        var outcome = await SendAsync(new OutgoingSms(To, "hello"));

        Assert.Equal(SendOutcomeKind.Unconfirmed, outcome.Kind);
        Assert.Single(_twilio.Requests);
    }

    [Fact]
    public async Task A_refused_connection_is_retried_then_Transient()
    {
        var account = Account(settings => settings["base_url"] = $"http://127.0.0.1:{Ports.Closed()}");

        var outcome = await Sender().SendAsync(account, new OutgoingSms(To, "hello"), CancellationToken.None);

        Assert.Equal(SendOutcomeKind.Transient, outcome.Kind);
        Assert.Equal(4, outcome.Attempts);
        Assert.Equal(3, _retries.Delays.Count);
        Assert.Contains("ConnectionError", outcome.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_callers_cancellation_throws_instead_of_looking_like_a_timeout()
    {
        _twilio.Enqueue(TwilioBehavior.Delay(TimeSpan.FromSeconds(2)));
        using var cancel = new CancellationTokenSource(TimeSpan.FromMilliseconds(200));

        await Assert.ThrowsAnyAsync<OperationCanceledException>(
            () => Sender().SendAsync(Account(), new OutgoingSms(To, "hello"), cancel.Token));
    }

    [Fact]
    public async Task A_misconfigured_account_sends_nothing()
    {
        var account = Account(settings => settings.Remove("account_sid"));

        var outcome = await Sender().SendAsync(account, new OutgoingSms(To, "hello"), CancellationToken.None);

        Assert.Equal(SendOutcomeKind.Permanent, outcome.Kind);
        Assert.Equal(0, outcome.Attempts);
        Assert.Contains("account_sid", outcome.Reason, StringComparison.Ordinal);
        Assert.Empty(_twilio.Requests);
    }

    private TwilioSmsSender Sender() => new(_http, _retries.Policy);

    private Task<SendOutcome> SendAsync(OutgoingSms sms) => Sender().SendAsync(Account(), sms, CancellationToken.None);

    private ProviderAccountConfig Account(Action<Dictionary<string, string>>? change = null, string? secret = null)
    {
        var settings = new Dictionary<string, string>
        {
            ["account_sid"] = _twilio.AccountSid,
            ["from"] = From,
            ["base_url"] = _twilio.BaseUri.ToString(),
            ["status_callback_url"] = StatusCallback,
        };
        change?.Invoke(settings);
        return new ProviderAccountConfig("acct-sms-1", "twilio", settings, secret ?? _twilio.AuthToken);
    }
}
