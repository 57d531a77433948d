namespace Crm.Delivery.Channels.Email;

/// <param name="Headers">Extra headers, e.g. List-Unsubscribe and List-Unsubscribe-Post for marketing email.</param>
public sealed record OutgoingEmail(string To, string? ToName, string Subject, string? TextBody, string? HtmlBody, IReadOnlyDictionary<string, string> Headers);

public interface IEmailSender
{
    Task<SendOutcome> SendAsync(ProviderAccountConfig account, OutgoingEmail email, CancellationToken ct);
}
