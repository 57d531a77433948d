using System.Text;
using MimeKit;

namespace Crm.Fakes.Smtp;

/// <summary>
/// One message the fake accepted (250 after DATA): the SMTP envelope, the exact bytes of DATA after
/// dot-unstuffing, and a MimeKit parse of them for header and body assertions.
/// </summary>
public sealed class ReceivedEmail
{
    private readonly byte[] _raw;

    internal ReceivedEmail(
        string queueId,
        DateTimeOffset receivedAt,
        string clientName,
        string envelopeFrom,
        IReadOnlyList<string> recipients,
        bool smtpUtf8,
        string? bodyType,
        byte[] raw)
    {
        QueueId = queueId;
        ReceivedAt = receivedAt;
        ClientName = clientName;
        EnvelopeFrom = envelopeFrom;
        Recipients = recipients;
        SmtpUtf8 = smtpUtf8;
        BodyType = bodyType;
        _raw = raw;
        (Mime, ParseError) = Parse(raw);
    }

    /// <summary>The id given in "250 2.0.0 Ok: queued as ...".</summary>
    public string QueueId { get; }

    public DateTimeOffset ReceivedAt { get; }

    /// <summary>The name the client gave in EHLO/HELO.</summary>
    public string ClientName { get; }

    /// <summary>MAIL FROM address; empty for the null reverse-path &lt;&gt; (bounces).</summary>
    public string EnvelopeFrom { get; }

    /// <summary>RCPT TO addresses that were accepted, in order.</summary>
    public IReadOnlyList<string> Recipients { get; }

    /// <summary>The client declared SMTPUTF8 on MAIL FROM.</summary>
    public bool SmtpUtf8 { get; }

    /// <summary>The BODY= parameter of MAIL FROM (7BIT, 8BITMIME) or null.</summary>
    public string? BodyType { get; }

    /// <summary>DATA exactly as received, minus the terminating "." line and with dot-stuffing removed.</summary>
    public ReadOnlyMemory<byte> RawData => _raw;

    /// <summary><see cref="RawData"/> decoded as UTF-8 (what SMTPUTF8/8BITMIME clients send).</summary>
    public string RawText => Encoding.UTF8.GetString(_raw);

    /// <summary>The parsed message; an empty message if MimeKit could not parse DATA (see <see cref="ParseError"/>).</summary>
    public MimeMessage Mime { get; }

    public string? ParseError { get; }

    /// <summary>Decoded Subject (RFC 2047 encoded-words resolved).</summary>
    public string Subject => Mime.Subject ?? "";

    /// <summary>Addresses of the From header (not the envelope).</summary>
    public IReadOnlyList<string> From => Mime.From.Mailboxes.Select(m => m.Address).ToList();

    /// <summary>Addresses of the To header (not the envelope).</summary>
    public IReadOnlyList<string> To => Mime.To.Mailboxes.Select(m => m.Address).ToList();

    public string? TextBody => Mime.TextBody;

    public string? HtmlBody => Mime.HtmlBody;

    /// <summary>The decoded value of the first header named <paramref name="name"/> (e.g. "List-Unsubscribe"), or null.</summary>
    public string? Header(string name) => Mime.Headers[name];

    public override string ToString() =>
        $"{QueueId} from=<{EnvelopeFrom}> to=<{string.Join(">,<", Recipients)}> subject=\"{Subject}\"";

    private static (MimeMessage, string?) Parse(byte[] raw)
    {
        try
        {
            using var stream = new MemoryStream(raw, writable: false);
            return (MimeMessage.Load(stream), null);
        }
        catch (FormatException e)
        {
            // A real server accepts whatever DATA it gets; keep the bytes and say why parsing failed.
            return (new MimeMessage(), e.Message);
        }
    }
}
