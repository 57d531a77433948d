using System.Collections.Frozen;
using MimeKit;
using MimeKit.Utils;

namespace Crm.Delivery.Channels.Email;

/// <summary>Turns an <see cref="OutgoingEmail"/> into the MIME message that goes over SMTP.</summary>
internal static class EmailMessageBuilder
{
    // Set from the account and the email itself; letting an extra header override them would let a
    // template forge the sender or break the MIME structure.
    private static readonly FrozenSet<string> ReservedHeaders = FrozenSet.Create(
        StringComparer.OrdinalIgnoreCase,
        "From", "Sender", "To", "Cc", "Bcc", "Subject", "Date", "Message-Id", "MIME-Version");

    public readonly record struct Result(MimeMessage? Message, string? Problem, bool RecipientInvalid);

    public static Result Build(SmtpAccount account, OutgoingEmail email)
    {
        if (!EmailAddresses.TryParse(email.To, email.ToName, out var to))
        {
            return new Result(null, $"'{email.To}' is not an email address", RecipientInvalid: true);
        }
        if (email.TextBody is null && email.HtmlBody is null)
        {
            return new Result(null, "the email has neither a text nor an HTML body", false);
        }
        if (email.Headers.Keys.FirstOrDefault(name => !IsAllowedHeader(name, email.Headers[name])) is { } bad)
        {
            return new Result(null, $"extra header '{bad}' is reserved or malformed", false);
        }

        var message = new MimeMessage
        {
            Subject = email.Subject,
            // Generated here, not by MailKit, so it is known before sending and can be reported as the provider id.
            MessageId = MimeUtils.GenerateMessageId(account.From.Domain),
            // Text and HTML together become multipart/alternative; one alone stays a single part.
            Body = new BodyBuilder { TextBody = email.TextBody, HtmlBody = email.HtmlBody }.ToMessageBody(),
        };
        message.From.Add(account.From);
        message.To.Add(to);
        foreach (var (name, value) in email.Headers)
        {
            // Replace, not Add: RFC 2369 allows one of each List-* field, whatever the case of the key.
            message.Headers.Replace(name, value);
        }
        return new Result(message, null, false);
    }

    // RFC 5322 §2.2: a field name is printable ASCII without ':'; a CR or LF in the value would inject headers.
    private static bool IsAllowedHeader(string name, string value) =>
        name.Length > 0
        && name.All(c => c is > ' ' and <= '~' and not ':')
        && !ReservedHeaders.Contains(name)
        && !name.StartsWith("Content-", StringComparison.OrdinalIgnoreCase)
        && !value.AsSpan().ContainsAny('\r', '\n');
}
