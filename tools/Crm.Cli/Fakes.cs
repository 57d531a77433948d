using Crm.Fakes.Smtp;
using Crm.Fakes.Twilio;

namespace Crm.Cli;

/// <summary>`crm fakes`: the loopback SMTP server and Twilio API that make run's Delivery service sends to, printing what arrives.</summary>
public static class Fakes
{
    public static async Task RunAsync(int twilioPort, int smtpPort)
    {
        await using var twilio = new FakeTwilioServer(port: twilioPort);
        await using var smtp = new FakeSmtpServer(new FakeSmtpServerOptions { Port = smtpPort });
        await twilio.StartAsync();
        await smtp.StartAsync();
        Console.WriteLine($"fake Twilio API on {twilio.BaseUri} (account {twilio.AccountSid}, token {twilio.AuthToken}); fake SMTP on {smtp.Host}:{smtp.Port}");
        int seenSms = 0, seenMail = 0;
        while (true)
        {
            foreach (var m in twilio.Messages.Skip(seenSms))
                Console.WriteLine($"SMS to {m.To} ({m.Segments} segments): {m.Body.Replace('\n', ' ')}");
            seenSms = twilio.Messages.Count;
            foreach (var e in smtp.Messages.Skip(seenMail))
                Console.WriteLine($"EMAIL to {string.Join(", ", e.Recipients)}: {e.Subject} | List-Unsubscribe: {e.Header("List-Unsubscribe")}");
            seenMail = smtp.Messages.Count;
            await Task.Delay(200);
        }
    }
}
