using Crm.Delivery.Channels.Email;
using Crm.Delivery.Channels.Sms;

namespace Crm.Delivery.Channels;

/// <summary>
/// A provider account of kind "noop" accepts everything and sends nothing: for load tests and
/// benchmarks of the pipeline itself. Only usable when Delivery:AllowNoopProvider is set.
/// </summary>
public sealed class NoopSender : ISmsSender, IEmailSender
{
    public const string Kind = "noop";

    public Task<SendOutcome> SendAsync(ProviderAccountConfig account, OutgoingSms sms, CancellationToken ct) =>
        Task.FromResult(new SendOutcome(SendOutcomeKind.Sent, "", $"noop-{Guid.NewGuid():N}"));

    public Task<SendOutcome> SendAsync(ProviderAccountConfig account, OutgoingEmail email, CancellationToken ct) =>
        Task.FromResult(new SendOutcome(SendOutcomeKind.Sent, "", $"noop-{Guid.NewGuid():N}"));
}
