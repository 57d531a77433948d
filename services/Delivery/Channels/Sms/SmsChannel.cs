using Crm.BuildingBlocks.Errors;
using Crm.Contracts.Delivery;

namespace Crm.Delivery.Channels.Sms;

/// <summary>
/// SMS: the contact's phone number, Twilio as the provider (status callbacks and replies come back to
/// <see cref="TwilioStatusCallbacks"/> and <see cref="TwilioIncomingMessages"/>), and Korea's advertising
/// form on marketing ("(광고)" and the sender first, the free opt-out number last).
/// </summary>
public sealed class SmsChannel(ISmsSender twilio, NoopSender noop, DeliveryOptions options) : IChannel
{
    public const string ChannelName = "sms";

    public string Name => ChannelName;

    public V1.Channel Proto => V1.Channel.Sms;

    public IReadOnlyList<ChannelProvider> Providers { get; } =
        [new(TwilioSmsSender.Kind, V1.ProviderKind.Twilio, config => TwilioAccount.Read(config).Problem, SendsReceipts: true)];

    public string? UnreachableFlag => "sms_unreachable";

    public string? AddressProblem(DeliveryContact contact) =>
        string.IsNullOrEmpty(contact.Phone) ? "contact has no phone number"
        : contact.SmsUnreachable ? "sms unreachable (reported by the provider)"
        : null;

    public void Validate(DeliveryRequest request, string path, Validation v)
    {
    }

    /// <summary>Twilio reports delivery to the status callback of this service, when its public URL is known.</summary>
    public ProviderAccountConfig Configure(string tenant, ProviderAccountConfig account) =>
        account.Kind == TwilioSmsSender.Kind && options.PublicBaseUrl.Length > 0 && !account.Settings.ContainsKey("status_callback_url")
            ? account with
            {
                Settings = new Dictionary<string, string>(account.Settings)
                {
                    ["status_callback_url"] = TwilioStatusCallbacks.UrlFor(options.PublicBaseUrl, tenant, account.AccountId),
                },
            }
            : account;

    public async Task<ChannelSendResult> SendAsync(ChannelSend send, CancellationToken ct)
    {
        var (m, contact, settings, account) = send;
        var body = m.TextBody ?? "";
        if (m.Purpose == "marketing" && settings.KoreanAdvertisingRules)
        {
            if (settings.SenderName.Length == 0 || settings.OptOutNumber.Length == 0)
                return ChannelSendResult.Refused("marketing SMS needs the sender name and free opt-out number (SetSenderProfile)");
            body = AdvertisingForm.KoreanSmsAd(body, settings.SenderName, settings.OptOutNumber);
        }
        var segments = SmsSegments.Count(body).Segments;
        var outcome = await (account.Kind == NoopSender.Kind ? noop : twilio).SendAsync(account, new OutgoingSms(contact.Phone!, body), ct);
        return new ChannelSendResult(outcome, segments);
    }

    public void MapEndpoints(WebApplication app)
    {
        app.MapTwilioStatusCallbacks();
        app.MapTwilioIncomingMessages();
    }
}
