using System.Globalization;
using System.Net;
using MailKit.Security;
using MimeKit;

namespace Crm.Delivery.Channels.Email;

/// <summary>What <see cref="SmtpEmailSender"/> needs from a tenant's provider account, read and checked once per send.</summary>
internal sealed record SmtpAccount(string Host, int Port, SecureSocketOptions Security, MailboxAddress From, string? Username, string? Password)
{
    /// <returns>The account, or why it cannot be used (a configuration problem: no connection is worth making).</returns>
    public static (SmtpAccount? Account, string? Problem) Read(ProviderAccountConfig config)
    {
        var host = config.Setting("host");
        if (host is null)
        {
            return (null, "no host setting");
        }
        // Without a secure setting, a loopback relay (or the test fake) gets plain SMTP, and anything across
        // the network gets STARTTLS so credentials and content are never sent in clear by omission.
        SecureSocketOptions? security = config.Setting("secure")?.ToUpperInvariant() switch
        {
            null => IsLoopback(host) ? SecureSocketOptions.None : SecureSocketOptions.StartTls,
            "NONE" => SecureSocketOptions.None,
            "STARTTLS" => SecureSocketOptions.StartTls,
            "SSL" => SecureSocketOptions.SslOnConnect,
            _ => null,
        };
        if (security is null)
        {
            return (null, $"secure must be none, starttls or ssl, not '{config.Setting("secure")}'");
        }
        var port = DefaultPort(security.Value);
        if (config.Setting("port") is { } portText
            && (!int.TryParse(portText, NumberStyles.None, CultureInfo.InvariantCulture, out port) || port is < 1 or > 65535))
        {
            return (null, $"port '{portText}' is not a TCP port");
        }
        if (!EmailAddresses.TryParse(config.Setting("from"), config.Setting("from_name"), out var from))
        {
            return (null, $"from '{config.Setting("from")}' is not an email address");
        }
        return (new SmtpAccount(host, port, security.Value, from, config.Setting("username"), config.Secret), null);
    }

    private static bool IsLoopback(string host) =>
        string.Equals(host, "localhost", StringComparison.OrdinalIgnoreCase)
        || (IPAddress.TryParse(host, out var address) && IPAddress.IsLoopback(address));

    private static int DefaultPort(SecureSocketOptions security) => security switch
    {
        SecureSocketOptions.SslOnConnect => 465,
        SecureSocketOptions.StartTls => 587,
        _ => 25,
    };

}

internal static class EmailAddresses
{
    /// <summary>A single addr-spec with a domain; a display name is taken from <paramref name="name"/> only.</summary>
    public static bool TryParse(string? address, string? name, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out MailboxAddress? mailbox)
    {
        mailbox = null;
        if (string.IsNullOrWhiteSpace(address))
        {
            return false;
        }
        try
        {
            mailbox = new MailboxAddress(name ?? "", address.Trim());
        }
        catch (ParseException)
        {
            return false;
        }
        // MimeKit accepts a bare local part ("postmaster"); an SMTP recipient needs a domain.
        return mailbox.Domain.Length > 0;
    }
}
