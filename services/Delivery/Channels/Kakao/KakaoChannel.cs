using System.Text.Json;
using Crm.BuildingBlocks.Errors;
using Crm.Contracts.Delivery;

namespace Crm.Delivery.Channels.Kakao;

/// <summary>
/// KakaoTalk business messages, reaching the contact's phone number: transactional messages are AlimTalk
/// (an approved template and its variables), marketing is FriendTalk sent as advertising (KakaoTalk shows
/// "(광고)"), which needs the contact's <c>kakao:marketing</c> opt-in and, under Korea's rules between 21:00
/// and 08:00, <c>kakao:marketing_night</c> (both checked by the pipeline like any channel's consent).
/// A contact KakaoTalk cannot reach (not a user, blocked the channel) ends this channel's attempt with
/// <see cref="ChannelSendResult.FallBack"/>, so a message with a fallback order continues on its next channel.
/// </summary>
public sealed class KakaoChannel(IKakaoSender nhn, NoopSender noop) : IChannel
{
    public const string ChannelName = "kakao";

    public string Name => ChannelName;

    public V1.Channel Proto => V1.Channel.Kakao;

    public IReadOnlyList<ChannelProvider> Providers { get; } =
        [new(NhnKakaoSender.Kind, V1.ProviderKind.NhnKakao, config => KakaoAccount.Read(config).Problem, SendsReceipts: true)];

    // "Not a KakaoTalk user" is no fact about the number to remember: it may join tomorrow, and SMS still reaches it.
    public string? UnreachableFlag => null;

    public string? AddressProblem(DeliveryContact contact) =>
        string.IsNullOrEmpty(contact.Phone) ? "contact has no phone number (KakaoTalk reaches a phone number)" : null;

    public void Validate(DeliveryRequest request, string path, Validation v)
    {
        if (request.Purpose == "transactional" && string.IsNullOrEmpty(request.TemplateCode))
            v.Add($"{path}template_code", "is required for a transactional KakaoTalk message (an approved AlimTalk template)");
    }

    public async Task<ChannelSendResult> SendAsync(ChannelSend send, CancellationToken ct)
    {
        var (m, contact, _, account) = send;
        var advertising = m.Purpose == "marketing";
        var parameters = m.TemplateParameters is { Length: > 0 } json
            ? JsonSerializer.Deserialize<Dictionary<string, string>>(json) ?? []
            : new Dictionary<string, string>();
        var message = new OutgoingKakao(
            RecipientNo(contact.Phone!),
            advertising ? null : m.TemplateCode,
            parameters,
            advertising ? AdvertisingForm.KakaoFriendTalk(m.TextBody ?? "") : m.TextBody,
            advertising,
            IdempotencyKey: m.MessageId.ToString("N"));
        if (account.Kind == NoopSender.Kind)
            return new ChannelSendResult(await noop.SendAsync(account, new Sms.OutgoingSms(contact.Phone!, m.TextBody ?? ""), ct));
        var (outcome, notReachable) = await nhn.SendAsync(account, message, ct);
        return new ChannelSendResult(outcome, FallBack: notReachable);
    }

    public void MapEndpoints(WebApplication app) => app.MapKakaoResultCallbacks();

    /// <summary>NHN Cloud takes Korean numbers in domestic form: +82 10-1234-5678 → 01012345678.</summary>
    internal static string RecipientNo(string phone)
    {
        var digits = new string(phone.Where(char.IsAsciiDigit).ToArray());
        return phone.StartsWith("+82", StringComparison.Ordinal) ? "0" + digits[2..] : digits;
    }
}
