namespace Crm.Delivery.Channels.Sms;

public sealed record OutgoingSms(string To, string Body);

public interface ISmsSender
{
    Task<SendOutcome> SendAsync(ProviderAccountConfig account, OutgoingSms sms, CancellationToken ct);
}
