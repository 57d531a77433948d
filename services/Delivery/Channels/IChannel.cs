using Crm.BuildingBlocks.Errors;
using Crm.Contracts.Delivery;
using Crm.Delivery.Features.Messages;
using Crm.Delivery.Features.Policies;

namespace Crm.Delivery.Channels;

/// <summary>
/// One channel family (email, SMS, KakaoTalk...): how a contact is reached on it, what a message on it must
/// carry, its providers, its advertising form and its sending. The pipeline knows channels only through
/// this interface and <see cref="ChannelRegistry"/>; a new channel is a folder, a proto enum value and a
/// registration line (<see cref="ChannelRegistration.AddChannel{T}"/>).
/// </summary>
/// <remarks>
/// Consents and cap rules are keyed by <see cref="Name"/> (<c>kakao:marketing</c>, <c>kakao:marketing_night</c>,
/// a "channel" cap rule with scope_value <c>kakao</c>).
/// </remarks>
public interface IChannel
{
    /// <summary>The name stored on messages, accounts, consents and cap rules.</summary>
    string Name { get; }

    V1.Channel Proto { get; }

    /// <summary>The provider kinds that send on this channel.</summary>
    IReadOnlyList<ChannelProvider> Providers { get; }

    /// <summary>The contact_channels flag a provider's "this address cannot take messages" sets, if the channel has one.</summary>
    string? UnreachableFlag { get; }

    /// <summary>Why the contact cannot be addressed on this channel (no address, reported unreachable), or null.</summary>
    string? AddressProblem(DeliveryContact contact);

    /// <summary>What a request for this channel must carry beyond what every message carries (a subject, a template).</summary>
    void Validate(DeliveryRequest request, string path, Validation v);

    /// <summary>An account's settings completed for this service once per batch (e.g. a receipt URL); unchanged by default.</summary>
    ProviderAccountConfig Configure(string tenant, ProviderAccountConfig account) => account;

    /// <summary>Puts the message into the channel's (and, for marketing, the jurisdiction's advertising) form and sends it.</summary>
    Task<ChannelSendResult> SendAsync(ChannelSend send, CancellationToken ct);

    /// <summary>The provider's callbacks (receipts, replies) this channel answers.</summary>
    void MapEndpoints(WebApplication app)
    {
    }
}

/// <summary>A provider kind of a channel: its stored name, its proto value and the check its settings must pass.</summary>
/// <param name="CheckSettings">Why an account's settings cannot be used, or null (the reader the sender itself uses).</param>
/// <param name="SendsReceipts">Delivery receipts come back naming the provider's message id, so such ids are indexed.</param>
public sealed record ChannelProvider(string Kind, V1.ProviderKind Proto, Func<ProviderAccountConfig, string?> CheckSettings, bool SendsReceipts);

/// <summary>What Delivery's projection knows of a contact, as the channels need it.</summary>
public sealed record DeliveryContact(string? Email, string? Phone, string? TimeZone, bool Suppressed, bool Erased,
    bool SmsUnreachable, bool EmailUnreachable, HashSet<string> Consents, HashSet<string> OptOuts);

/// <summary>One message to send on a channel, with everything decided before it (consent, window, caps, throttle).</summary>
public sealed record ChannelSend(MessageRow Message, DeliveryContact Contact, DeliverySettings Settings, ProviderAccountConfig Account);

/// <param name="Segments">SMS segments billed, for channels that count them.</param>
/// <param name="Attempted">False when the message was refused before any provider was called (e.g. the advertising
/// form lacks the sender profile): the attempt is not counted.</param>
/// <param name="FallBack">The provider answered that the contact cannot get it on this channel (not a KakaoTalk
/// user, blocked, no valid push token): a message with a fallback order continues on its next channel.</param>
public sealed record ChannelSendResult(SendOutcome Outcome, int? Segments = null, bool Attempted = true, bool FallBack = false)
{
    public static ChannelSendResult Refused(string reason) => new(new SendOutcome(SendOutcomeKind.Permanent, reason, Attempts: 0), Attempted: false);
}
