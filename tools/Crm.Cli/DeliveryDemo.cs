using Crm.Delivery.V1;
using Grpc.Core;
using Grpc.Net.Client;
using ContactsApi = Crm.Contacts.V1;

namespace Crm.Cli;

/// <summary>make run's second act: provider accounts on the loopback fakes, a cap, and messages that go out or say why not.</summary>
public static class DeliveryDemo
{
    public static async Task RunAsync(Uri contactsUrl, Uri deliveryUrl, string tenant, string twilioUrl, int smtpPort, string kakaoUrl)
    {
        using var contactsChannel = GrpcChannel.ForAddress(contactsUrl);
        using var channel = GrpcChannel.ForAddress(deliveryUrl);
        var contacts = new ContactsApi.ContactsService.ContactsServiceClient(contactsChannel);
        var delivery = new DeliveryService.DeliveryServiceClient(channel);
        var auth = new Metadata { { "authorization", "Bearer " + Tokens.Issue(tenant, ["*"]) } };

        var sms = new ProviderAccount { AccountId = "twilio-demo", Kind = ProviderKind.Twilio, Channel = Channel.Sms, IsDefault = true, MessagesPerSecond = 1 };
        sms.Settings.Add("account_sid", Crm.Fakes.Twilio.FakeTwilioServer.DefaultAccountSid);
        sms.Settings.Add("from", "+15005550006");
        sms.Settings.Add("base_url", twilioUrl);
        await delivery.UpsertProviderAccountAsync(new UpsertProviderAccountRequest { Account = sms, Secret = Crm.Fakes.Twilio.FakeTwilioServer.DefaultAuthToken }, auth);
        var email = new ProviderAccount { AccountId = "smtp-demo", Kind = ProviderKind.Smtp, Channel = Channel.Email, IsDefault = true, MessagesPerSecond = 50 };
        email.Settings.Add("host", "127.0.0.1");
        email.Settings.Add("port", smtpPort.ToString(System.Globalization.CultureInfo.InvariantCulture));
        email.Settings.Add("from", "shop@example.kr");
        email.Settings.Add("from_name", "데모 상점");
        await delivery.UpsertProviderAccountAsync(new UpsertProviderAccountRequest { Account = email }, auth);
        var kakao = new ProviderAccount { AccountId = "kakao-demo", Kind = ProviderKind.NhnKakao, Channel = Channel.Kakao, IsDefault = true, MessagesPerSecond = 50 };
        kakao.Settings.Add("app_key", Crm.Fakes.Kakao.FakeKakaoServer.DefaultAppKey);
        kakao.Settings.Add("sender_key", Crm.Fakes.Kakao.FakeKakaoServer.DefaultSenderKey);
        kakao.Settings.Add("base_url", kakaoUrl);
        await delivery.UpsertProviderAccountAsync(new UpsertProviderAccountRequest { Account = kakao, Secret = Crm.Fakes.Kakao.FakeKakaoServer.DefaultSecretKey }, auth);
        await delivery.SetSenderProfileAsync(new SetSenderProfileRequest
        {
            Profile = new SenderProfile { SenderName = "데모상점", OptOutNumber = "080-123-4567", UnsubscribeUrl = "https://shop.example.kr/u/{message_id}" },
        }, auth);
        await delivery.SetFrequencyCapRulesAsync(new SetFrequencyCapRulesRequest
        {
            Rules = { new FrequencyCapRule { RuleId = "weekly-2", Scope = CapScope.AllMarketing, Limit = 2, WindowSeconds = 7 * 86_400 } },
        }, auth);
        Console.WriteLine("delivery: Twilio, SMTP and KakaoTalk (NHN Cloud) accounts on the loopback fakes, the Korean sender profile, a cap of 2 marketing messages a week");

        // A customer of this run: Contacts announces the profile and the consent, Delivery's projection picks them up.
        var run = DateTime.UtcNow.Ticks;
        var minjun = (await contacts.UpsertContactAsync(new ContactsApi.UpsertContactRequest
        {
            ExternalId = $"D-{run}", Name = "박서준", Email = "seojun@example.kr", Phone = $"010-5555-{run % 10_000:D4}", TimeZone = "Asia/Seoul",
        }, auth)).Contact;
        foreach (var (consentChannel, purpose) in new[] { (ContactsApi.Channel.Sms, ContactsApi.Purpose.Marketing), (ContactsApi.Channel.Email, ContactsApi.Purpose.Marketing) })
            await contacts.SetConsentAsync(new ContactsApi.SetConsentRequest
            {
                Contact = new ContactsApi.ContactRef { Id = minjun.Id }, Channel = consentChannel, Purpose = purpose,
                Status = ContactsApi.ConsentStatus.OptedIn, Source = ContactsApi.ConsentSource.Form, Evidence = "demo signup form",
            }, auth);
        await Task.Delay(TimeSpan.FromSeconds(3)); // the events travel through the outbox and RabbitMQ
        Console.WriteLine($"contact {minjun.ExternalId} {minjun.Name} ({minjun.Phone}) opted in to marketing SMS and email");

        var sends = new (string Label, SendMessageRequest Request)[]
        {
            ("KakaoTalk → SMS", new SendMessageRequest
            {
                IdempotencyKey = $"kakao-{run}", ContactId = minjun.Id, Channel = Channel.Kakao, Purpose = Purpose.Transactional,
                TemplateCode = "ORDER_SHIPPED", TemplateParameters = { ["orderNo"] = $"D-{run % 10_000}" },
                TextBody = "[데모상점] 주문하신 상품이 발송되었습니다.", Fallback = { Channel.Sms },
            }),
            ("transactional SMS", new SendMessageRequest { IdempotencyKey = $"ship-{run}", ContactId = minjun.Id, Channel = Channel.Sms, Purpose = Purpose.Transactional, TextBody = "[데모상점] 주문하신 상품이 발송되었습니다." }),
            ("marketing email", new SendMessageRequest { IdempotencyKey = $"news-{run}", ContactId = minjun.Id, Channel = Channel.Email, Purpose = Purpose.Marketing, Subject = "[광고] 봄 신상품", HtmlBody = "<h1>봄 신상품</h1>", TextBody = "봄 신상품" }),
            ("marketing SMS 1", Promo(minjun.Id, run, 1)),
            ("marketing SMS 2", Promo(minjun.Id, run, 2)),
            ("marketing SMS 3", Promo(minjun.Id, run, 3)),
        };
        foreach (var (label, request) in sends)
        {
            var m = await delivery.SendMessageAsync(request, auth);
            var why = m.Reason.Length > 0 ? $" — {m.Reason}" : "";
            Console.WriteLine($"  {label,-18} {m.Status} on {m.Channel}{why}");
            // One message, one timeline, whichever channels it went through.
            if (m.Timeline.Count > 2)
                foreach (var step in m.Timeline) Console.WriteLine($"      {step.Status,-10} {step.Reason}");
        }
    }

    private static SendMessageRequest Promo(string contactId, long run, int n) => new()
    {
        IdempotencyKey = $"promo-{run}-{n}", ContactId = contactId, Channel = Channel.Sms, Purpose = Purpose.Marketing,
        TextBody = $"봄 세일 {n}: 전 품목 20% 할인",
    };
}
