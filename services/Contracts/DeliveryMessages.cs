namespace Crm.Contracts.Delivery;

// Commands to, and events of, the Delivery service.

/// <summary>Send messages through the delivery pipeline; Campaigns fans out with batches of recipients.</summary>
public sealed record DeliverMessage(string TenantId, IReadOnlyList<DeliveryRequest> Messages);

/// <summary>
/// One message. Channel: email, sms, kakao. Purpose: marketing, transactional. OnCap: suppress, defer.
/// QuietStart/QuietEnd ("21:00", "08:00") replace the tenant's quiet hours for this message;
/// ProviderAccountId picks an account other than the channel's default. Fallback: channels to continue
/// on, in order, when the contact cannot get it on Channel (one message, one timeline). TemplateCode and
/// TemplateParameters: a KakaoTalk AlimTalk template and its variables.
/// </summary>
public sealed record DeliveryRequest(
    string IdempotencyKey,
    Guid ContactId,
    string Channel,
    string Purpose,
    string? CampaignId = null,
    string? Category = null,
    string? Subject = null,
    string? TextBody = null,
    string? HtmlBody = null,
    bool IgnoreCaps = false,
    string OnCap = "suppress",
    DateTimeOffset? ExpiresAt = null,
    string? QuietStart = null,
    string? QuietEnd = null,
    string? ProviderAccountId = null,
    DateTimeOffset? SendAt = null,
    IReadOnlyList<string>? Fallback = null,
    string? TemplateCode = null,
    IReadOnlyDictionary<string, string>? TemplateParameters = null);

public sealed record MessageSent(
    string TenantId, Guid MessageId, Guid ContactId, string Channel, string? CampaignId,
    string ProviderMessageId, int Segments, DateTimeOffset SentAt);

public sealed record MessageFailed(
    string TenantId, Guid MessageId, Guid ContactId, string Channel, string? CampaignId,
    string Reason, DateTimeOffset FailedAt);

public sealed record MessageSuppressed(
    string TenantId, Guid MessageId, Guid ContactId, string Channel, string? CampaignId,
    string Reason, string? RuleId, DateTimeOffset SuppressedAt);

/// <summary>The messages of one pipeline batch that went out (one event per batch, not per message).</summary>
public sealed record MessagesSent(string TenantId, IReadOnlyList<MessageSent> Messages);

/// <summary>The messages of one pipeline batch that were suppressed, each with its reason and rule.</summary>
public sealed record MessagesSuppressed(string TenantId, IReadOnlyList<MessageSuppressed> Messages);

/// <summary>The messages of one pipeline batch that failed for good.</summary>
public sealed record MessagesFailed(string TenantId, IReadOnlyList<MessageFailed> Messages);

/// <summary>A provider said the address cannot take messages (Twilio 21610 unsubscribed, 21211 invalid, SMTP 550).</summary>
public sealed record ChannelUnreachable(
    string TenantId, Guid ContactId, string Channel, string Reason, DateTimeOffset OccurredAt);

/// <summary>
/// An SMS a customer sent back to a sender of the workspace, as the provider reported it. OptOut when
/// it is an opt-out keyword (STOP, 수신거부, ...): Contacts records the opt-out of marketing SMS with the
/// message as evidence.
/// </summary>
public sealed record SmsReplyReceived(string TenantId, string From, string To, string Body, string ProviderMessageId, bool OptOut, DateTimeOffset ReceivedAt);

/// <summary>
/// What Delivery observed coming back from its messages (delivery receipts, opens, clicks, bounces, complaints,
/// unsubscribes), a batch at a time. Contacts records each as an engagement event (announced as
/// EngagementRecorded, so Segmentation sees it); EventId is the dedupe key of the observation, so a provider
/// repeating itself, or this event delivered twice, records it once.
/// </summary>
public sealed record EngagementObserved(string TenantId, IReadOnlyList<ObservedEngagement> Events);

/// <summary>
/// One observation. Type: delivered, opened, machine_opened (a mail privacy proxy or prefetcher fetched the
/// pixel, kept apart from opens), clicked, bounced, complained, unsubscribed. PropertiesJson: a JSON object
/// (the link and its URL for a click, the bounce type for a bounce, ...).
/// </summary>
public sealed record ObservedEngagement(
    string EventId, Guid ContactId, string Type, string Channel, Guid MessageId, string? CampaignId,
    DateTimeOffset OccurredAt, string PropertiesJson);

/// <summary>
/// A recipient used the platform's unsubscribe link (RFC 8058 one-click POST, or the confirmation page's
/// button): Contacts withdraws the contact's marketing consent on the channel, source unsubscribe_link, with
/// the request (time, address, user agent) as the evidence.
/// </summary>
public sealed record UnsubscribeRequested(
    string TenantId, Guid ContactId, string Channel, Guid MessageId, string? CampaignId, DateTimeOffset RequestedAt, string Evidence);
