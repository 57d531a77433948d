using Crm.Fakes.Smtp;
using MailKit.Net.Smtp;
using MailKit.Security;
using MimeKit;

namespace Crm.Fakes.Tests.Smtp;

/// <summary>The SMTP fake driven by MailKit, the client the Delivery service uses.</summary>
public sealed class SmtpFakeMailKitTests : IAsyncLifetime
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(10);
    private readonly FakeSmtpServer _smtp = new();

    public Task InitializeAsync() => _smtp.StartAsync();

    public Task DisposeAsync() => _smtp.DisposeAsync().AsTask();

    [Fact]
    public async Task Records_a_multipart_Korean_marketing_mail_with_its_headers_intact()
    {
        var message = Marketing("kim@example.kr");
        message.Subject = "[광고] 봄 세일";
        message.Headers.Add("List-Unsubscribe", "<mailto:unsubscribe@crm.test?subject=u-123>, <https://crm.test/u/123>");
        message.Headers.Add("List-Unsubscribe-Post", "List-Unsubscribe=One-Click");
        message.Body = new BodyBuilder
        {
            // Lines starting with '.' are dot-stuffed by MailKit and must come back unstuffed.
            TextBody = "봄 세일이 시작됐어요.\r\n.leading dot\r\n..two dots\r\n.",
            HtmlBody = "<p>봄 세일이 시작됐어요.</p>",
        }.ToMessageBody();

        await SendAsync(message);

        var mail = Assert.Single(await _smtp.WaitForMessagesAsync(1, Wait));
        Assert.Equal("news@crm.test", mail.EnvelopeFrom);
        Assert.Equal(["kim@example.kr"], mail.Recipients);
        Assert.Equal("[광고] 봄 세일", mail.Subject);
        Assert.Equal(["news@crm.test"], mail.From);
        Assert.Equal(["kim@example.kr"], mail.To);
        Assert.Equal("<mailto:unsubscribe@crm.test?subject=u-123>, <https://crm.test/u/123>", mail.Header("List-Unsubscribe"));
        Assert.Equal("List-Unsubscribe=One-Click", mail.Header("List-Unsubscribe-Post"));
        // On the wire: CRLF kept, MailKit's dot-stuffing undone ("." alone was sent as "..").
        Assert.Contains("봄 세일이 시작됐어요.\r\n.leading dot\r\n..two dots\r\n.\r\n--", mail.RawText, StringComparison.Ordinal);
        // MimeKit's decoded TextBody uses LF line endings.
        Assert.Equal("봄 세일이 시작됐어요.\n.leading dot\n..two dots\n.", mail.TextBody?.ReplaceLineEndings("\n").TrimEnd('\n'));
        Assert.Equal("<p>봄 세일이 시작됐어요.</p>", mail.HtmlBody?.TrimEnd('\r', '\n'));
        Assert.Equal("multipart/alternative", mail.Mime.Body?.ContentType.MimeType);
        Assert.Null(mail.ParseError);
        Assert.Contains("Subject: =?utf-8?", mail.RawText, StringComparison.OrdinalIgnoreCase);  // RFC 2047 on the wire
    }

    [Fact]
    public async Task A_550_at_RCPT_surfaces_as_SmtpCommandException_and_the_next_message_goes_through()
    {
        _smtp.FailNextMessages(1, SmtpStage.Rcpt, 550, "5.1.1 <gone@example.kr>: User unknown");

        var error = await Assert.ThrowsAsync<SmtpCommandException>(() => SendAsync(Marketing("gone@example.kr")));
        Assert.Equal(SmtpStatusCode.MailboxUnavailable, error.StatusCode);
        Assert.Equal(550, (int)error.StatusCode);
        Assert.Equal(SmtpErrorCode.RecipientNotAccepted, error.ErrorCode);
        Assert.Equal("gone@example.kr", error.Mailbox?.Address);

        await SendAsync(Marketing("gone@example.kr"));
        Assert.Single(await _smtp.WaitForMessagesAsync(1, Wait));
        var fault = Assert.Single(_smtp.FaultsServed);
        Assert.Equal(SmtpStage.Rcpt, fault.Stage);
        Assert.Equal(550, fault.Reply?.Code);
    }

    [Fact]
    public async Task A_recipient_can_be_refused_temporarily_at_end_of_DATA_every_time()
    {
        _smtp.FailRecipient("busy@example.kr", SmtpStage.DataEnd, 451, "4.3.0 Try again later");

        for (var attempt = 0; attempt < 2; attempt++)
        {
            var error = await Assert.ThrowsAsync<SmtpCommandException>(() => SendAsync(Marketing("busy@example.kr")));
            Assert.Equal(451, (int)error.StatusCode);
            Assert.Equal(SmtpErrorCode.MessageNotAccepted, error.ErrorCode);
        }
        await SendAsync(Marketing("other@example.kr"));

        var mail = Assert.Single(await _smtp.WaitForMessagesAsync(1, Wait));
        Assert.Equal(["other@example.kr"], mail.Recipients);
        Assert.Equal(2, _smtp.FaultsServed.Count);
    }

    [Fact]
    public async Task A_hang_at_end_of_DATA_makes_the_client_time_out_and_nothing_is_recorded()
    {
        _smtp.HangNextMessages(1, SmtpStage.DataEnd);

        await Assert.ThrowsAsync<TimeoutException>(() => SendAsync(Marketing("kim@example.kr"), timeoutMs: 500));

        Assert.True(Assert.Single(await _smtp.WaitForFaultsAsync(1, Wait)).Hung);
        Assert.Empty(_smtp.Messages);
    }

    [Fact]
    public async Task A_hung_greeting_makes_connect_time_out()
    {
        _smtp.HangNextMessages(1, SmtpStage.Greeting);

        using var client = new SmtpClient { Timeout = 500 };
        await Assert.ThrowsAsync<TimeoutException>(() => client.ConnectAsync(_smtp.Host, _smtp.Port, SecureSocketOptions.None));
    }

    [Fact]
    public async Task SMTPUTF8_carries_a_Korean_local_part()
    {
        await SendAsync(Marketing("사용자@example.kr"));

        var mail = Assert.Single(await _smtp.WaitForMessagesAsync(1, Wait));
        Assert.True(mail.SmtpUtf8);
        Assert.Equal(["사용자@example.kr"], mail.Recipients);
    }

    [Fact]
    public async Task Concurrent_connections_are_all_served()
    {
        const int count = 8;
        await Task.WhenAll(Enumerable.Range(0, count).Select(i => SendAsync(Marketing($"user{i}@example.kr"))));

        var mails = await _smtp.WaitForMessagesAsync(count, Wait);
        Assert.Equal(
            Enumerable.Range(0, count).Select(i => $"user{i}@example.kr").Order(),
            mails.Select(m => m.Recipients.Single()).Order());
    }

    private static MimeMessage Marketing(string to)
    {
        var message = new MimeMessage();
        message.From.Add(new MailboxAddress("CRM 뉴스", "news@crm.test"));
        message.To.Add(new MailboxAddress("", to));
        message.Subject = "hello";
        message.Body = new TextPart("plain") { Text = "hi" };
        return message;
    }

    private async Task SendAsync(MimeMessage message, int timeoutMs = 5000)
    {
        using var client = new SmtpClient { Timeout = timeoutMs };
        await client.ConnectAsync(_smtp.Host, _smtp.Port, SecureSocketOptions.None);
        await client.SendAsync(message);
        await client.DisconnectAsync(quit: true);
    }
}
