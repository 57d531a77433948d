namespace Crm.Delivery.Channels.Kakao;

/// <param name="RecipientNo">The phone number as the provider takes it (Korean numbers in domestic form, 010...).</param>
/// <param name="TemplateCode">AlimTalk: the approved template; null for FriendTalk.</param>
/// <param name="Content">FriendTalk: the text; AlimTalk: not sent (the template is the text).</param>
/// <param name="Advertising">FriendTalk advertising (isAd): KakaoTalk shows it with "(광고)".</param>
/// <param name="IdempotencyKey">Sent as X-NC-API-IDEMPOTENCY-KEY: a repeat within ten minutes is refused, never sent twice.</param>
public sealed record OutgoingKakao(string RecipientNo, string? TemplateCode, IReadOnlyDictionary<string, string> TemplateParameters,
    string? Content, bool Advertising, string IdempotencyKey);

/// <param name="NotReachable">The provider said this contact cannot get KakaoTalk messages from us (not a KakaoTalk
/// user, blocked the channel): a message with a fallback continues on its next channel.</param>
public sealed record KakaoSendOutcome(SendOutcome Outcome, bool NotReachable = false);

public interface IKakaoSender
{
    Task<KakaoSendOutcome> SendAsync(ProviderAccountConfig account, OutgoingKakao message, CancellationToken ct);
}
