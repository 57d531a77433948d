using Crm.Delivery.Channels;
using Crm.Delivery.Channels.Email;
using Crm.Fakes.Smtp;

namespace Crm.Delivery.Tests.Channels;

/// <summary>SmtpEmailSender against the loopback SMTP fake, over a real socket.</summary>
public sealed class SmtpEmailSenderTests : IAsyncLifetime
{
    private const string To = "kim@example.kr";
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(10);

    private readonly FakeSmtpServer _smtp = new();
    private static readonly Crm.BuildingBlocks.Net.OutboundGuard LoopbackAllowed = new(allowPrivateAddresses: true); // the fake is on loopback
    private readonly RecordedRetries _retries = new();

    public Task InitializeAsync() => _smtp.StartAsync();

    public Task DisposeAsync() => _smtp.DisposeAsync().AsTask();

    [Fact]
    public async Task A_multipart_Korean_marketing_email_arrives_intact_with_its_unsubscribe_headers()
    {
        var headers = AdvertisingForm.UnsubscribeHeaders("https://crm.test/u/7f3a9c", "unsubscribe@crm.test?subject=u-7f3a9c");
        var email = new OutgoingEmail(To, "김민지", "(광고) 봄맞이 세일 — 최대 50% 할인", "봄 세일이 시작됐어요.\n지금 확인하세요.",
            "<p>봄 세일이 시작됐어요.</p>", headers);

        var outcome = await SendAsync(email);

        Assert.Equal(SendOutcomeKind.Sent, outcome.Kind);
        Assert.Equal(1, outcome.Attempts);
        var mail = Assert.Single(await _smtp.WaitForMessagesAsync(1, Wait));
        Assert.Equal("news@crm.test", mail.EnvelopeFrom);
        Assert.Equal([To], mail.Recipients);
        Assert.Equal(["news@crm.test"], mail.From);
        Assert.Equal("크림 뉴스", mail.Mime.From.Mailboxes.Single().Name);
        Assert.Equal("김민지", mail.Mime.To.Mailboxes.Single().Name);
        Assert.Equal("(광고) 봄맞이 세일 — 최대 50% 할인", mail.Subject);
        Assert.Equal("multipart/alternative", mail.Mime.Body?.ContentType.MimeType);
        Assert.Equal("봄 세일이 시작됐어요.\n지금 확인하세요.", mail.TextBody?.ReplaceLineEndings("\n").TrimEnd('\n'));
        Assert.Equal("<p>봄 세일이 시작됐어요.</p>", mail.HtmlBody?.TrimEnd('\r', '\n'));
        Assert.Equal(mail.Mime.MessageId, outcome.ProviderMessageId);
        Assert.EndsWith("@crm.test", outcome.ProviderMessageId, StringComparison.Ordinal);

        Assert.Equal("<https://crm.test/u/7f3a9c>, <mailto:unsubscribe@crm.test?subject=u-7f3a9c>", mail.Header("List-Unsubscribe"));
        // RFC 2369 §3 / RFC 8058 §3.1: exactly one of each; the Post value exactly as RFC 8058 §5 spells it.
        Assert.Single(mail.Mime.Headers, h => h.Field == "List-Unsubscribe");
        Assert.Single(mail.Mime.Headers, h => h.Field == "List-Unsubscribe-Post");
        Assert.Contains("\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n", mail.RawText, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_text_only_email_is_a_single_text_part()
    {
        var outcome = await SendAsync(Email(html: null));

        Assert.Equal(SendOutcomeKind.Sent, outcome.Kind);
        var mail = Assert.Single(await _smtp.WaitForMessagesAsync(1, Wait));
        Assert.Equal("text/plain", mail.Mime.Body?.ContentType.MimeType);
        Assert.Equal("utf-8", mail.Mime.Body?.ContentType.Charset, ignoreCase: true);
    }

    [Fact]
    public async Task Without_a_secure_setting_a_loopback_server_gets_plain_SMTP()
    {
        var account = Account(settings => settings.Remove("secure"));

        var outcome = await new SmtpEmailSender(_retries.Policy, LoopbackAllowed).SendAsync(account, Email(), CancellationToken.None);

        Assert.Equal(SendOutcomeKind.Sent, outcome.Kind);
    }

    [Fact]
    public async Task Asking_for_STARTTLS_from_a_server_without_it_is_a_configuration_error_not_retried()
    {
        var account = Account(settings => settings["secure"] = "starttls");

        var outcome = await new SmtpEmailSender(_retries.Policy, LoopbackAllowed).SendAsync(account, Email(), CancellationToken.None);

        Assert.Equal(SendOutcomeKind.Permanent, outcome.Kind);
        Assert.Equal(1, outcome.Attempts);
        Assert.Empty(_smtp.Messages);
    }

    [Fact]
    public async Task A_550_at_RCPT_is_permanent_and_the_recipient_unreachable()
    {
        _smtp.FailNextMessages(1, SmtpStage.Rcpt, 550, "5.1.1 <kim@example.kr>: User unknown");

        var outcome = await SendAsync(Email());

        Assert.Equal(SendOutcomeKind.Permanent, outcome.Kind);
        Assert.True(outcome.RecipientUnreachable);
        Assert.Equal(550, outcome.ProviderErrorCode);
        Assert.Equal(1, outcome.Attempts);
        Assert.Contains("RCPT TO", outcome.Reason, StringComparison.Ordinal);
        Assert.Empty(_smtp.Messages);
    }

    [Fact]
    public async Task A_554_at_end_of_DATA_is_permanent_but_not_the_recipients_fault()
    {
        _smtp.FailNextMessages(1, SmtpStage.DataEnd, 554, "5.7.1 Message rejected as spam");

        var outcome = await SendAsync(Email());

        Assert.Equal(SendOutcomeKind.Permanent, outcome.Kind);
        Assert.False(outcome.RecipientUnreachable);
        Assert.Equal(554, outcome.ProviderErrorCode);
        Assert.Equal(1, outcome.Attempts);
    }

    [Fact]
    public async Task Two_451s_at_end_of_DATA_are_retried_and_the_third_attempt_delivers()
    {
        _smtp.FailNextMessages(2, SmtpStage.DataEnd, 451, "4.3.0 Try again later");

        var outcome = await SendAsync(Email());

        Assert.Equal(SendOutcomeKind.Sent, outcome.Kind);
        Assert.Equal(3, outcome.Attempts);
        Assert.Single(await _smtp.WaitForMessagesAsync(1, Wait));
        Assert.Equal(2, _smtp.FaultsServed.Count);
        Assert.Equal(2, _retries.Delays.Count);
    }

    [Fact]
    public async Task Temporary_refusals_that_never_end_give_up_as_Transient()
    {
        _smtp.FailNextMessages(FakeSmtpServer.Forever, SmtpStage.DataEnd, 451, "4.3.0 Try again later");

        var outcome = await SendAsync(Email());

        Assert.Equal(SendOutcomeKind.Transient, outcome.Kind);
        Assert.Equal(4, outcome.Attempts);
        Assert.Equal(451, outcome.ProviderErrorCode);
    }

    [Fact]
    public async Task A_hang_at_end_of_DATA_is_Unconfirmed_and_not_retried()
    {
        _retries.Options.RequestTimeout = TimeSpan.FromSeconds(1);
        _smtp.HangNextMessages(1, SmtpStage.DataEnd);

        var outcome = await SendAsync(Email());

        Assert.Equal(SendOutcomeKind.Unconfirmed, outcome.Kind);
        Assert.Equal(1, outcome.Attempts);
        Assert.True(Assert.Single(await _smtp.WaitForFaultsAsync(1, Wait)).Hung);
        Assert.Empty(_retries.Delays);
    }

    [Fact]
    public async Task A_hang_before_DATA_is_safe_to_retry()
    {
        _retries.Options.RequestTimeout = TimeSpan.FromSeconds(1);
        _smtp.HangNextMessages(1, SmtpStage.Rcpt);

        var outcome = await SendAsync(Email());

        Assert.Equal(SendOutcomeKind.Sent, outcome.Kind);
        Assert.Equal(2, outcome.Attempts);
        Assert.Single(await _smtp.WaitForMessagesAsync(1, Wait));
    }

    [Fact]
    public async Task A_refused_connection_is_retried_then_Transient()
    {
        var account = Account(settings => settings["port"] = Ports.Closed().ToString(System.Globalization.CultureInfo.InvariantCulture));

        var outcome = await new SmtpEmailSender(_retries.Policy, LoopbackAllowed).SendAsync(account, Email(), CancellationToken.None);

        Assert.Equal(SendOutcomeKind.Transient, outcome.Kind);
        Assert.Equal(4, outcome.Attempts);
    }

    [Fact]
    public async Task An_address_that_does_not_parse_is_unreachable_without_connecting()
    {
        var outcome = await SendAsync(Email() with { To = "kim at example.kr" });

        Assert.Equal(SendOutcomeKind.Permanent, outcome.Kind);
        Assert.True(outcome.RecipientUnreachable);
        Assert.Equal(0, outcome.Attempts);
    }

    [Theory]
    [InlineData("From", "boss@crm.test")]
    [InlineData("content-type", "text/plain")]
    [InlineData("X-Campaign", "a\r\nBcc: victim@example.kr")]
    public async Task Extra_headers_cannot_override_the_message_or_inject_lines(string name, string value)
    {
        var outcome = await SendAsync(Email() with { Headers = new Dictionary<string, string> { [name] = value } });

        Assert.Equal(SendOutcomeKind.Permanent, outcome.Kind);
        Assert.Equal(0, outcome.Attempts);
        Assert.Empty(_smtp.Messages);
    }

    private Task<SendOutcome> SendAsync(OutgoingEmail email) =>
        new SmtpEmailSender(_retries.Policy, LoopbackAllowed).SendAsync(Account(), email, CancellationToken.None);

    private static OutgoingEmail Email(string? html = "<p>안녕하세요</p>") =>
        new(To, null, "안녕하세요", "안녕하세요", html, new Dictionary<string, string>());

    private ProviderAccountConfig Account(Action<Dictionary<string, string>>? change = null)
    {
        var settings = new Dictionary<string, string>
        {
            ["host"] = _smtp.Host,
            ["port"] = _smtp.Port.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["from"] = "news@crm.test",
            ["from_name"] = "크림 뉴스",
            ["secure"] = "none",
        };
        change?.Invoke(settings);
        return new ProviderAccountConfig("acct-mail-1", "smtp", settings, Secret: null);
    }
}
