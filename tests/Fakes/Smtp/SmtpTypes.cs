namespace Crm.Fakes.Smtp;

/// <summary>Where in the SMTP dialogue a programmed failure strikes.</summary>
public enum SmtpStage
{
    /// <summary>Instead of the 220 greeting (counted per connection, not per message).</summary>
    Greeting,

    /// <summary>The reply to RCPT TO: the recipient is refused.</summary>
    Rcpt,

    /// <summary>The reply after the final "." of DATA: the whole message is refused.</summary>
    DataEnd,
}

/// <summary>An SMTP reply; <see cref="Text"/> should start with the enhanced status code (e.g. "5.1.1 User unknown").</summary>
public sealed record SmtpReply(int Code, string Text)
{
    public override string ToString() => $"{Code} {Text}";
}

/// <summary>A programmed failure that was actually served; <see cref="Reply"/> is null when the server hung.</summary>
public sealed record SmtpFaultEvent(
    DateTimeOffset At,
    SmtpStage Stage,
    SmtpReply? Reply,
    string? EnvelopeFrom,
    IReadOnlyList<string> Recipients)
{
    public bool Hung => Reply is null;
}

/// <summary>Limits and names of a <see cref="FakeSmtpServer"/>; the defaults suit tests.</summary>
public sealed record FakeSmtpServerOptions
{
    /// <summary>0 (default): an ephemeral port, read it from <see cref="FakeSmtpServer.Port"/>. A fixed port suits the local demo.</summary>
    public int Port { get; init; }

    /// <summary>Name the server gives itself in the greeting and the EHLO reply.</summary>
    public string HostName { get; init; } = "fake-smtp.crm.test";

    /// <summary>Advertised as SIZE and enforced on DATA (552 5.3.4 beyond it).</summary>
    public long MaxMessageSize { get; init; } = 10 * 1024 * 1024;

    /// <summary>RFC 5321 §4.5.3.1.8: at least 100 must be accepted; beyond it 452 4.5.3.</summary>
    public int MaxRecipients { get; init; } = 100;

    /// <summary>A connection that sends nothing for this long is closed (421 4.4.2).</summary>
    public TimeSpan IdleTimeout { get; init; } = TimeSpan.FromMinutes(2);
}
