using Crm.Delivery.Channels.Sms;

namespace Crm.Fakes.Twilio;

/// <summary>One HTTP request the fake received, recorded once its response was decided.</summary>
public sealed record TwilioRequest
{
    /// <summary>Arrival order, from 1.</summary>
    public required long Sequence { get; init; }

    public required DateTimeOffset ReceivedAt { get; init; }

    /// <summary><see cref="System.Diagnostics.Stopwatch.GetTimestamp"/> at arrival, for precise spacing assertions.</summary>
    public required long Timestamp { get; init; }

    /// <summary>Arrival time on the high-resolution clock, measured from the creation of the server.</summary>
    public required TimeSpan SinceStart { get; init; }

    public required string Method { get; init; }

    public required string Path { get; init; }

    /// <summary>The {AccountSid} of the URL path, if the route had one.</summary>
    public string? AccountSid { get; init; }

    /// <summary>The Basic-auth user the client presented (null without an Authorization header).</summary>
    public string? AuthUser { get; init; }

    public required bool AuthOk { get; init; }

    /// <summary>Form fields in the order parsed; a repeated name (MediaUrl) appears once per value.</summary>
    public required IReadOnlyList<KeyValuePair<string, string>> Form { get; init; }

    public required int ResponseStatus { get; init; }

    /// <summary>Twilio error code of the response (20003, 21211, 20429...), null on success.</summary>
    public int? ErrorCode { get; init; }

    /// <summary>Sid of the message created by this request, if any.</summary>
    public string? MessageSid { get; init; }

    /// <summary>The programmed behaviour that served this request, if any.</summary>
    public string? Behavior { get; init; }

    /// <summary>The client had disconnected (e.g. timed out) by the time the response was ready.</summary>
    public bool ClientAborted { get; init; }

    public string? To => Field("To");

    public string? From => Field("From");

    public string? Body => Field("Body");

    public string? MessagingServiceSid => Field("MessagingServiceSid");

    public string? StatusCallback => Field("StatusCallback");

    public IReadOnlyList<string> MediaUrls => Form.Where(p => p.Key == "MediaUrl").Select(p => p.Value).ToList();

    public string? Field(string name) => Form.FirstOrDefault(p => p.Key == name).Value;
}

/// <summary>A message the fake created (a 201 answer).</summary>
public sealed record TwilioMessage
{
    public required string Sid { get; init; }

    public required string AccountSid { get; init; }

    public required string To { get; init; }

    /// <summary>Null when sent through a Messaging Service without From (Twilio picks the sender later).</summary>
    public string? From { get; init; }

    public string? MessagingServiceSid { get; init; }

    public required string Body { get; init; }

    public string? StatusCallback { get; init; }

    public required IReadOnlyList<string> MediaUrls { get; init; }

    /// <summary>What the body costs on the air (also when the API reported num_segments "0", see <see cref="FakeTwilioServer"/>).</summary>
    public required int Segments { get; init; }

    public required DateTimeOffset DateCreated { get; init; }

    /// <summary>"queued" or "accepted" when created; updated by <see cref="FakeTwilioServer.SendStatusCallbackAsync"/>.</summary>
    public required string Status { get; init; }

    public int? ErrorCode { get; init; }
}

/// <summary>What <see cref="FakeTwilioServer.SendStatusCallbackAsync"/> posted and how the receiver answered.</summary>
public sealed record TwilioCallbackResult(
    string Url,
    IReadOnlyList<KeyValuePair<string, string>> Parameters,
    string Signature,
    int ResponseStatus);
