using Twilio.Rest.Api.V2010.Account;
using Twilio.Types;

namespace Crm.Delivery.Channels.Sms;

/// <summary>What <see cref="TwilioSmsSender"/> needs from a tenant's provider account, read and checked once per send.</summary>
/// <param name="BaseUri">Where the Messages API is (https://api.twilio.com/, or the loopback fake in tests and the demo).</param>
internal sealed record TwilioAccount(
    Uri BaseUri,
    string AccountSid,
    string AuthToken,
    string? From,
    string? MessagingServiceSid,
    string? StatusCallbackUrl)
{
    private static readonly Uri DefaultBaseUri = new("https://api.twilio.com/");

    /// <returns>The account, or why it cannot be used (a configuration problem: no request is worth making).</returns>
    public static (TwilioAccount? Account, string? Problem) Read(ProviderAccountConfig config)
    {
        var accountSid = config.Setting("account_sid");
        if (accountSid is null)
        {
            return (null, "no account_sid setting");
        }
        if (string.IsNullOrEmpty(config.Secret))
        {
            return (null, "no auth token (secret)");
        }
        var from = config.Setting("from");
        var messagingServiceSid = config.Setting("messaging_service_sid");
        if (from is null && messagingServiceSid is null)
        {
            return (null, "neither from nor messaging_service_sid is set");
        }
        var baseUri = DefaultBaseUri;
        if (config.Setting("base_url") is { } baseUrl)
        {
            // A base without a trailing slash would make the relative path replace its last segment.
            if (!Uri.TryCreate(baseUrl.EndsWith('/') ? baseUrl : baseUrl + "/", UriKind.Absolute, out baseUri))
            {
                return (null, $"base_url '{baseUrl}' is not an absolute URL");
            }
        }
        var callback = config.Setting("status_callback_url");
        if (callback is not null && !Uri.TryCreate(callback, UriKind.Absolute, out _))
        {
            return (null, $"status_callback_url '{callback}' is not an absolute URL");
        }
        return (new TwilioAccount(baseUri, accountSid, config.Secret, from, messagingServiceSid, callback), null);
    }

    /// <summary>The create-message call. A Messaging Service, when configured, picks the sender itself, so From is then left out.</summary>
    public CreateMessageOptions Options(OutgoingSms sms) => new(new PhoneNumber(sms.To))
    {
        PathAccountSid = AccountSid,
        From = MessagingServiceSid is null ? new PhoneNumber(From!) : null,
        MessagingServiceSid = MessagingServiceSid,
        Body = sms.Body,
        StatusCallback = StatusCallbackUrl is null ? null : new Uri(StatusCallbackUrl),
    };

    /// <summary>The SDK addresses api.twilio.com; the request goes to the account's base URL with the same path.</summary>
    public Uri Rebase(Uri sdkUri) => new(BaseUri, sdkUri.PathAndQuery.TrimStart('/'));
}
