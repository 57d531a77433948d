using Crm.Delivery.Channels.Kakao;
using Crm.Delivery.Tests.Infrastructure;
using Crm.Delivery.V1;
using Crm.Fakes.Kakao;

namespace Crm.Delivery.Tests;

/// <summary>The KakaoTalk channel against the loopback NHN Cloud fake, and fallback as one message.</summary>
[Collection(DeliveryCollection.Name)]
public sealed class KakaoChannelTests(DeliveryFixture fx)
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(20);

    private static SendMessageRequest AlimTalk(Guid contact, string key, params Channel[] fallback)
    {
        var request = new SendMessageRequest
        {
            IdempotencyKey = key, ContactId = contact.ToString(), Channel = Channel.Kakao, Purpose = Purpose.Transactional,
            TemplateCode = "ORDER_SHIPPED", TextBody = "주문하신 상품이 발송되었습니다.", TemplateParameters = { ["orderNo"] = "A-1001" },
        };
        request.Fallback.AddRange(fallback);
        return request;
    }

    [Fact]
    public async Task Should_fall_back_to_sms_exactly_once_with_one_timeline_when_the_contact_is_not_a_KakaoTalk_user()
    {
        var t = await fx.NewWorkspaceAsync();
        var c = await fx.NewContactAsync(t, phone: "+821055501001");
        fx.Kakao.SetRecipient("01055501001", KakaoRecipientBehavior.NotAKakaoTalkUser);

        var m = await fx.Client.SendMessageAsync(AlimTalk(c, "kakao-fallback-1", Channel.Sms), fx.As(t));

        Assert.Equal(MessageStatus.Sent, m.Status);
        Assert.Equal(Channel.Sms, m.Channel);
        Assert.Equal([MessageStatus.Accepted, MessageStatus.Deferred, MessageStatus.Sent], m.Timeline.Select(s => s.Status));
        Assert.Contains("3019", m.Timeline[1].Reason, StringComparison.Ordinal);
        Assert.EndsWith("continuing on sms", m.Timeline[1].Reason, StringComparison.Ordinal);
        // A later message to the same number, seen at Twilio, proves the first one's work is over before counting.
        await fx.Client.SendMessageAsync(new SendMessageRequest
        {
            IdempotencyKey = "kakao-fallback-1-after", ContactId = c.ToString(), Channel = Channel.Sms, Purpose = Purpose.Transactional, TextBody = "확인",
        }, fx.As(t));
        var sms = fx.Twilio.Messages.Where(x => x.To == "+821055501001").ToList();
        Assert.Equal(2, sms.Count);
        Assert.Equal("주문하신 상품이 발송되었습니다.", sms[0].Body);
        Assert.Equal(sms[0].Sid, m.ProviderMessageId);
        var tried = Assert.Single(fx.Kakao.Requests.SelectMany(r => r.Recipients), r => r.RecipientNo == "01055501001");
        Assert.Equal(FakeKakaoServer.NotAUserCode, tried.ResultCode);
        Assert.Equal("A-1001", tried.TemplateParameter["orderNo"]);
        var all = await fx.Client.ListMessagesAsync(new ListMessagesRequest { ContactId = c.ToString() }, fx.As(t));
        Assert.Equal(2, all.Messages.Count); // one message for the KakaoTalk-then-SMS send, one for the later SMS
    }

    [Fact]
    public async Task Should_fail_without_sending_sms_when_a_blocked_contact_has_no_fallback()
    {
        var t = await fx.NewWorkspaceAsync();
        var c = await fx.NewContactAsync(t, phone: "+821055501002");
        fx.Kakao.SetRecipient("01055501002", KakaoRecipientBehavior.Blocked);

        var m = await fx.Client.SendMessageAsync(AlimTalk(c, "kakao-blocked-1"), fx.As(t));

        Assert.Equal(MessageStatus.Failed, m.Status);
        Assert.Equal(Channel.Kakao, m.Channel);
        Assert.Contains("3018", m.Reason, StringComparison.Ordinal);
        Assert.DoesNotContain(fx.Twilio.Requests, r => r.To == "+821055501002");
    }

    [Fact]
    public async Task Should_send_marketing_as_a_FriendTalk_advertisement_only_with_kakao_marketing_consent()
    {
        var t = await fx.NewWorkspaceAsync();
        var consenting = await fx.NewContactAsync(t, phone: "+821055501003", consents: [("kakao", "marketing", "opted_in"), ("kakao", "marketing_night", "opted_in")]);
        var smsOnly = await fx.NewContactAsync(t, phone: "+821055501004", consents: [("sms", "marketing", "opted_in")]);
        SendMessageRequest Ad(Guid c, string key) => new()
        {
            IdempotencyKey = key, ContactId = c.ToString(), Channel = Channel.Kakao, Purpose = Purpose.Marketing, TextBody = "(광고) 봄 세일 50%",
        };

        var sent = await fx.Client.SendMessageAsync(Ad(consenting, "kakao-ad-1"), fx.As(t));
        var refused = await fx.Client.SendMessageAsync(Ad(smsOnly, "kakao-ad-2"), fx.As(t));

        Assert.Equal(MessageStatus.Sent, sent.Status);
        var request = Assert.Single(fx.Kakao.Requests, r => r.Recipients.Any(x => x.RecipientNo == "01055501003"));
        Assert.Equal("friendtalk", request.Kind);
        Assert.Equal(sent.MessageId.Replace("-", "", StringComparison.Ordinal), request.IdempotencyKey);
        Assert.True(request.Recipients[0].IsAd);
        Assert.Equal("봄 세일 50%", request.Recipients[0].Content); // KakaoTalk shows "(광고)" itself for isAd
        Assert.Equal(MessageStatus.Suppressed, refused.Status);
        Assert.Equal("consent: no marketing opt-in on kakao", refused.Reason);
    }

    [Fact]
    public async Task Should_ignore_forged_and_replayed_result_callbacks_and_apply_a_signed_fresh_one()
    {
        var t = await fx.NewWorkspaceAsync();
        var c = await fx.NewContactAsync(t, phone: "+821055501005");
        var m = await fx.Client.SendMessageAsync(AlimTalk(c, "kakao-receipt-1"), fx.As(t));
        Assert.Equal(MessageStatus.Sent, m.Status);
        var url = KakaoResultCallbacks.UrlFor(fx.Host.HttpAddress.ToString(), t, "kakao-main");

        var forged = await fx.Kakao.SendResultCallbackAsync(url, m.ProviderMessageId, delivered: false, timestamp: fx.Clock.GetUtcNow(), secretKey: "not-the-secret");
        var replayed = await fx.Kakao.SendResultCallbackAsync(url, m.ProviderMessageId, delivered: false, timestamp: fx.Clock.GetUtcNow().AddMinutes(-10));

        Assert.Equal((403, 403), (forged, replayed));
        Assert.Equal(MessageStatus.Sent, (await fx.Client.GetMessageAsync(new GetMessageRequest { MessageId = m.MessageId }, fx.As(t))).Status);

        Assert.Equal(204, await fx.Kakao.SendResultCallbackAsync(url, m.ProviderMessageId, delivered: true, timestamp: fx.Clock.GetUtcNow()));
        // The same result again within the window, and a late "failed", find the message already delivered.
        Assert.Equal(204, await fx.Kakao.SendResultCallbackAsync(url, m.ProviderMessageId, delivered: false, timestamp: fx.Clock.GetUtcNow()));
        var after = await fx.Client.GetMessageAsync(new GetMessageRequest { MessageId = m.MessageId }, fx.As(t));
        Assert.Equal(MessageStatus.Delivered, after.Status);
        Assert.Single(after.Timeline, s => s.Status == MessageStatus.Delivered);
    }
}
