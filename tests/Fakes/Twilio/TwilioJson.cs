using System.Globalization;
using System.Text.Json;

namespace Crm.Fakes.Twilio;

/// <summary>An error as the Twilio REST API reports it; <see cref="ToJson"/> has the real field names.</summary>
internal sealed record TwilioError(int HttpStatus, int Code, string Message, int? RetryAfterSeconds = null)
{
    public static TwilioError Authenticate() => new(401, 20003, "Authenticate");

    public static TwilioError NotFound(string path) => new(404, 20404, $"The requested resource {path} was not found");

    public static TwilioError From(ErrorBehavior behavior, string? to) =>
        new(behavior.HttpStatus, behavior.Code, behavior.Message ?? DefaultMessage(behavior.Code, to), behavior.RetryAfterSeconds);

    public string ToJson() => JsonSerializer.Serialize(
        new ErrorBody(Code, Message, $"https://www.twilio.com/docs/errors/{Code}", HttpStatus), TwilioJson.Options);

    private static string DefaultMessage(int code, string? to) => code switch
    {
        21211 => $"Invalid 'To' Phone Number: {to}",
        21610 => "Attempt to send to unsubscribed recipient",
        20429 => "Too Many Requests",
        _ => "Error",
    };

    private sealed record ErrorBody(int Code, string Message, string MoreInfo, int Status);
}

/// <summary>The Message resource exactly as the 2010-04-01 API serialises it (strings for counts, RFC 2822 dates).</summary>
internal sealed record MessageResource(
    string AccountSid,
    string ApiVersion,
    string Body,
    string DateCreated,
    string? DateSent,
    string DateUpdated,
    string Direction,
    int? ErrorCode,
    string? ErrorMessage,
    string? From,
    string? MessagingServiceSid,
    string NumMedia,
    string NumSegments,
    string? Price,
    string PriceUnit,
    string Sid,
    string Status,
    IReadOnlyDictionary<string, string> SubresourceUris,
    string To,
    string Uri)
{
    public static MessageResource Of(TwilioMessage m)
    {
        var uri = $"/2010-04-01/Accounts/{m.AccountSid}/Messages/{m.Sid}";
        var date = TwilioJson.Rfc2822(m.DateCreated);
        return new MessageResource(
            m.AccountSid, "2010-04-01", m.Body, date, null, date, "outbound-api", m.ErrorCode, null, m.From,
            m.MessagingServiceSid, m.MediaUrls.Count.ToString(CultureInfo.InvariantCulture),
            SegmentsReported(m), null, "USD", m.Sid, m.Status,
            new Dictionary<string, string> { ["media"] = uri + "/Media.json" }, m.To, uri + ".json");
    }

    // Twilio documents that a send through a Messaging Service always reports num_segments "0" in the
    // API response (segments are only known once a sender is chosen); a client must count them itself.
    private static string SegmentsReported(TwilioMessage m) =>
        m.MessagingServiceSid is not null ? "0" : m.Segments.ToString(CultureInfo.InvariantCulture);
}

internal static class TwilioJson
{
    public static JsonSerializerOptions Options { get; } = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

    /// <summary>"Thu, 24 Aug 2023 05:01:45 +0000": Twilio's date format.</summary>
    public static string Rfc2822(DateTimeOffset at) =>
        at.ToUniversalTime().ToString("ddd, dd MMM yyyy HH:mm:ss '+0000'", CultureInfo.InvariantCulture);
}
