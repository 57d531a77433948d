using Crm.BuildingBlocks.Errors;
using Crm.Contracts.Delivery;

namespace Crm.Delivery.Channels.Email;

/// <summary>
/// Email: the contact's address, SMTP as the provider, the message composed by <see cref="EmailComposer"/> (on marketing
/// the unsubscribe headers, the Korean advertising form and tracking), bounces and complaints as its receipts.
/// </summary>
public sealed class EmailChannel(IEmailSender smtp, NoopSender noop, EmailComposer composer) : IChannel
{
    public const string ChannelName = "email";

    public string Name => ChannelName;

    public V1.Channel Proto => V1.Channel.Email;

    public IReadOnlyList<ChannelProvider> Providers { get; } =
        [new(SmtpEmailSender.Kind, V1.ProviderKind.Smtp, config => SmtpAccount.Read(config).Problem, SendsReceipts: true)];

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
        var composed = composer.Compose(m, settings, account, contact.Email!);
        if (composed.Email is null) return ChannelSendResult.Refused(composed.Problem!);
        var outcome = await (account.Kind == NoopSender.Kind ? noop : smtp).SendAsync(account, composed.Email, ct);
        return new ChannelSendResult(outcome);
    }

    /// <summary>Bounces and complaints: Amazon SES through SNS, and the generic signed feedback webhook.</summary>
    public void MapEndpoints(WebApplication app) => app.MapEmailFeedback();
}
