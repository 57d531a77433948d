using System.Net.Http.Headers;
using System.Text;

namespace Crm.Delivery.Channels.Sms;

/// <summary>What <see cref="TwilioSmsSender"/> needs from a tenant's provider account, read and checked once per send.</summary>
internal sealed record TwilioAccount(
    Uri MessagesUri,
    AuthenticationHeaderValue Authorization,
    string? From,
    string? MessagingServiceSid,
    string? StatusCallbackUrl)
{
    private static readonly Uri DefaultBaseUri = new("https://api.twilio.com/");

    /// <returns>The account, or why it cannot be used (a configuration problem: no request is worth making).</returns>
    public static (TwilioAccount? Account, string? Problem) Read(ProviderAccountConfig config)
    {
        var accountSid = Setting(config, "account_sid");
        if (accountSid is null)
        {
            return (null, "no account_sid setting");
        }
        if (string.IsNullOrEmpty(config.Secret))
        {
            return (null, "no auth token (secret)");
        }
        var from = Setting(config, "from");
        var messagingServiceSid = Setting(config, "messaging_service_sid");
        if (from is null && messagingServiceSid is null)
        {
            return (null, "neither from nor messaging_service_sid is set");
        }
        var baseUri = DefaultBaseUri;
        if (Setting(config, "base_url") is { } baseUrl)
        {
            // A base without a trailing slash would make the relative path replace its last segment.
            if (!Uri.TryCreate(baseUrl.EndsWith('/') ? baseUrl : baseUrl + "/", UriKind.Absolute, out baseUri))
            {
                return (null, $"base_url '{baseUrl}' is not an absolute URL");
            }
        }

        var messagesUri = new Uri(baseUri, $"2010-04-01/Accounts/{Uri.EscapeDataString(accountSid)}/Messages.json");
        var credentials = Convert.ToBase64String(Encoding.UTF8.GetBytes($"{accountSid}:{config.Secret}"));
        return (new TwilioAccount(
            messagesUri,
            new AuthenticationHeaderValue("Basic", credentials),
            from,
            messagingServiceSid,
            Setting(config, "status_callback_url")), null);
    }

    /// <summary>The create-message form. A Messaging Service, when configured, picks the sender itself, so From is then left out.</summary>
    public IEnumerable<KeyValuePair<string, string>> Form(OutgoingSms sms)
    {
        yield return new("To", sms.To);
        yield return MessagingServiceSid is not null ? new("MessagingServiceSid", MessagingServiceSid) : new("From", From!);
        yield return new("Body", sms.Body);
        if (StatusCallbackUrl is not null)
        {
            yield return new("StatusCallback", StatusCallbackUrl);
        }
    }

    private static string? Setting(ProviderAccountConfig config, string name) =>
        config.Settings.TryGetValue(name, out var value) && !string.IsNullOrWhiteSpace(value) ? value.Trim() : null;
}
