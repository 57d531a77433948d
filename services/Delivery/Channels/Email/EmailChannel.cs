using Crm.BuildingBlocks.Errors;
using Crm.Contracts.Delivery;

namespace Crm.Delivery.Channels.Email;

/// <summary>
/// Email: the contact's address, SMTP as the provider, and on marketing the List-Unsubscribe headers
/// (RFC 2369, RFC 8058 one-click) from the workspace's sender profile.
/// </summary>
public sealed class EmailChannel(IEmailSender smtp, NoopSender noop) : IChannel
{
    public const string ChannelName = "email";

    public string Name => ChannelName;

    public V1.Channel Proto => V1.Channel.Email;

    public IReadOnlyList<ChannelProvider> Providers { get; } =
        [new(SmtpEmailSender.Kind, V1.ProviderKind.Smtp, config => SmtpAccount.Read(config).Problem, SendsReceipts: false)];

    public string? UnreachableFlag => "email_unreachable";

    public string? AddressProblem(DeliveryContact contact) =>
        string.IsNullOrEmpty(contact.Email) ? "contact has no email address"
        : contact.EmailUnreachable ? "email unreachable (reported by the provider)"
        : null;

    public void Validate(DeliveryRequest request, string path, Validation v)
    {
        if (string.IsNullOrEmpty(request.Subject)) v.Add($"{path}subject", "is required for email");
    }

    public async Task<ChannelSendResult> SendAsync(ChannelSend send, CancellationToken ct)
    {
        var (m, contact, settings, account) = send;
        var headers = new Dictionary<string, string>();
        if (m.Purpose == "marketing")
        {
            var url = settings.UnsubscribeUrl.Replace("{message_id}", m.MessageId.ToString("N"), StringComparison.Ordinal);
            var mailto = settings.UnsubscribeMailto;
            if (url.Length == 0 && mailto.Length == 0)
                return ChannelSendResult.Refused("marketing email needs an unsubscribe URL or address (SetSenderProfile)");
            foreach (var (k, v) in AdvertisingForm.UnsubscribeHeaders(url.Length > 0 ? url : null, mailto.Length > 0 ? mailto : null)) headers[k] = v;
        }
        var outcome = await (account.Kind == NoopSender.Kind ? noop : smtp)
            .SendAsync(account, new OutgoingEmail(contact.Email!, null, m.Subject ?? "", m.TextBody, m.HtmlBody, headers), ct);
        return new ChannelSendResult(outcome);
    }
}
