using System.Text.RegularExpressions;

namespace Crm.Fakes.Twilio;

/// <summary>The checks the Messages API makes on a create request, with Twilio's error codes.</summary>
internal static partial class MessageRequestValidator
{
    public const int MaxBodyLength = 1600;

    public static TwilioError? Validate(TwilioRequestForm form)
    {
        if (string.IsNullOrEmpty(form.To))
        {
            return new TwilioError(400, 21604, "A 'To' phone number is required.");
        }
        if (!E164().IsMatch(form.To))
        {
            return new TwilioError(400, 21211, $"Invalid 'To' Phone Number: {form.To}");
        }
        if (string.IsNullOrEmpty(form.From) && string.IsNullOrEmpty(form.MessagingServiceSid))
        {
            return new TwilioError(400, 21603, "A 'From' phone number is required.");
        }
        if (!string.IsNullOrEmpty(form.From) && !E164().IsMatch(form.From) && !AlphanumericSenderId().IsMatch(form.From))
        {
            return new TwilioError(400, 21212, $"Invalid From Number (caller ID): {form.From}");
        }
        if (!string.IsNullOrEmpty(form.MessagingServiceSid) && !MessagingServiceSid().IsMatch(form.MessagingServiceSid))
        {
            return new TwilioError(400, 21701, $"The Messaging Service Sid {form.MessagingServiceSid} is invalid.");
        }
        if (form.To == form.From)
        {
            return new TwilioError(400, 21266, $"'To' and 'From' number cannot be the same: {form.To}");
        }
        if (string.IsNullOrEmpty(form.Body) && form.MediaUrls.Count == 0)
        {
            return new TwilioError(400, 21602, "Message body is required.");
        }
        if (form.Body?.Length > MaxBodyLength)
        {
            return new TwilioError(400, 21617, "The concatenated message body exceeds the 1600 character limit.");
        }
        if (form.StatusCallback is not null && !IsHttpUrl(form.StatusCallback))
        {
            return new TwilioError(400, 21609, "Invalid 'StatusCallback'");
        }
        return null;
    }

    private static bool IsHttpUrl(string url) =>
        Uri.TryCreate(url, UriKind.Absolute, out var uri) && (uri.Scheme == Uri.UriSchemeHttp || uri.Scheme == Uri.UriSchemeHttps);

    [GeneratedRegex(@"^\+[1-9][0-9]{1,14}$")]
    private static partial Regex E164();

    // Alphanumeric sender ID: up to 11 of [A-Za-z0-9 ], at least one letter.
    [GeneratedRegex(@"^(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}$")]
    private static partial Regex AlphanumericSenderId();

    [GeneratedRegex(@"^MG[0-9a-fA-F]{32}$")]
    private static partial Regex MessagingServiceSid();
}

/// <summary>The form fields of a create-message request that the fake looks at.</summary>
internal sealed record TwilioRequestForm(IReadOnlyList<KeyValuePair<string, string>> Fields)
{
    public string? To => Field("To");

    public string? From => Field("From");

    public string? MessagingServiceSid => Field("MessagingServiceSid");

    public string? Body => Field("Body");

    public string? StatusCallback => Field("StatusCallback");

    public IReadOnlyList<string> MediaUrls => Fields.Where(p => p.Key == "MediaUrl").Select(p => p.Value).ToList();

    private string? Field(string name) => Fields.FirstOrDefault(p => p.Key == name).Value;
}
