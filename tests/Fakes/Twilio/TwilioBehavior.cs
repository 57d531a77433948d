namespace Crm.Fakes.Twilio;

/// <summary>
/// What <see cref="FakeTwilioServer"/> does with a Messages request instead of (or before) creating the
/// message. Queue them with <see cref="FakeTwilioServer.Enqueue"/> / <see cref="FakeTwilioServer.EnqueueFor"/>;
/// when the queues are empty requests are processed normally. Authentication is always checked first,
/// so a request with bad credentials gets 401 and consumes no behaviour.
/// </summary>
public abstract record TwilioBehavior
{
    private protected TwilioBehavior()
    {
    }

    /// <summary>Process normally (validation still applies). Useful to interleave with failures.</summary>
    public static TwilioBehavior Normal { get; } = new NormalBehavior();

    /// <summary>429 with a <c>Retry-After</c> header in seconds and Twilio error 20429.</summary>
    public static TwilioBehavior TooManyRequests(int retryAfterSeconds = 1) =>
        new ErrorBehavior(429, 20429, "Too Many Requests", retryAfterSeconds);

    /// <summary>500 (error 20500) or 503 (error 20503), or any 5xx.</summary>
    public static TwilioBehavior ServerError(int httpStatus = 500) => httpStatus switch
    {
        500 => new ErrorBehavior(500, 20500, "An internal server error has occurred", null),
        503 => new ErrorBehavior(503, 20503, "Service Unavailable", null),
        _ => new ErrorBehavior(httpStatus, 20500, "An internal server error has occurred", null),
    };

    /// <summary>Permanent rejection: 400, 21610 "Attempt to send to unsubscribed recipient" (the handset sent STOP).</summary>
    public static TwilioBehavior Unsubscribed() =>
        new ErrorBehavior(400, 21610, "Attempt to send to unsubscribed recipient", null);

    /// <summary>Permanent rejection: 400, 21211 "Invalid 'To' Phone Number", whatever the number looks like.</summary>
    public static TwilioBehavior InvalidTo() => new ErrorBehavior(400, 21211, null, null);

    /// <summary>Any Twilio error response; <paramref name="message"/> defaults to Twilio's text for known codes.</summary>
    public static TwilioBehavior Error(int httpStatus, int code, string? message = null, int? retryAfterSeconds = null) =>
        new ErrorBehavior(httpStatus, code, message, retryAfterSeconds);

    /// <summary>
    /// Sleeps <paramref name="delay"/> before answering, then does <paramref name="then"/> (default: process
    /// normally). The server does not stop when the client gives up: like the real API the message may
    /// still be created, which is exactly the ambiguity a client's timeout handling must cope with
    /// (<see cref="TwilioRequest.ClientAborted"/> tells which requests the client abandoned).
    /// </summary>
    public static TwilioBehavior Delay(TimeSpan delay, TwilioBehavior? then = null) =>
        new DelayBehavior(delay, then ?? Normal);

    /// <summary>Closes the connection without any HTTP response (the client sees a reset / IOException).</summary>
    public static TwilioBehavior DropConnection() => new DropBehavior();
}

internal sealed record NormalBehavior : TwilioBehavior;

internal sealed record ErrorBehavior(int HttpStatus, int Code, string? Message, int? RetryAfterSeconds) : TwilioBehavior;

internal sealed record DelayBehavior(TimeSpan Duration, TwilioBehavior Then) : TwilioBehavior;

internal sealed record DropBehavior : TwilioBehavior;
