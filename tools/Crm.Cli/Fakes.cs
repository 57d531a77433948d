using Crm.Fakes.Smtp;
using Crm.Fakes.Twilio;

namespace Crm.Cli;

/// <summary>`crm fakes`: the loopback SMTP server and Twilio API that make run's Delivery service sends to, printing what arrives.</summary>
public static class Fakes
{
    public static async Task RunAsync(int twilioPort, int smtpPort, int kakaoPort)
    {
        // The demo's customers are not on KakaoTalk, so its KakaoTalk message falls back to SMS.
        await using var kakao = new Crm.Fakes.Kakao.FakeKakaoServer(port: kakaoPort) { DefaultRecipientBehavior = Crm.Fakes.Kakao.KakaoRecipientBehavior.NotAKakaoTalkUser };
        await kakao.StartAsync();
        Console.WriteLine($"fake NHN Cloud KakaoTalk API on {kakao.BaseUri} (app key {kakao.AppKey}); every number answers 3019 not a KakaoTalk user");
        await using var twilio = new FakeTwilioServer(port: twilioPort);
        await using var smtp = new FakeSmtpServer(new FakeSmtpServerOptions { Port = smtpPort });
        await twilio.StartAsync();
        await smtp.StartAsync();
        Console.WriteLine($"fake Twilio API on {twilio.BaseUri} (account {twilio.AccountSid}, token {twilio.AuthToken}); fake SMTP on {smtp.Host}:{smtp.Port}");
        // The fakes host a web server whose lifetime takes over SIGTERM; stop on it (and Ctrl-C) ourselves.
        using var stop = new CancellationTokenSource();
        using var term = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGTERM, _ => stop.Cancel());
        using var interrupt = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGINT, _ => stop.Cancel());
        int seenSms = 0, seenMail = 0, seenKakao = 0;
        while (!stop.IsCancellationRequested)
        {
            var texts = twilio.Messages; // one snapshot, so nothing arriving meanwhile is skipped
            foreach (var m in texts.Skip(seenSms))
                Console.WriteLine($"SMS to {m.To} ({m.Segments} segments): {m.Body.Replace('\n', ' ')}");
            seenSms = texts.Count;
            var mails = smtp.Messages;
            foreach (var e in mails.Skip(seenMail))
                Console.WriteLine($"EMAIL to {string.Join(", ", e.Recipients)}: {e.Subject} | List-Unsubscribe: {e.Header("List-Unsubscribe")}");
            seenMail = mails.Count;
            var talks = kakao.Requests;
            foreach (var k in talks.Skip(seenKakao))
                foreach (var r in k.Recipients)
                    Console.WriteLine($"KAKAO {k.Kind} {k.TemplateCode} to {r.RecipientNo}: result {r.ResultCode} {r.ResultMessage}");
            seenKakao = talks.Count;
            try { await Task.Delay(200, stop.Token); } catch (OperationCanceledException) { }
        }
    }
}
