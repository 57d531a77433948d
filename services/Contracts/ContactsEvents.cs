namespace Crm.Contracts.Contacts;

// Integration events published by the Contacts service through its outbox.
// Events carry the state consumers need for their projections; they are applied
// last-writer-wins by OccurredAt, since at-least-once delivery may reorder them.

/// <summary>
/// A contact's profile was created or changed. A contact first seen in a purchase (no profile yet)
/// is not announced by this event; it appears as the ContactId of <see cref="TransactionsRecorded"/>.
/// </summary>
public sealed record ContactUpserted(
    string TenantId,
    Guid ContactId,
    string ExternalId,
    string? Email,
    string? Phone,
    string? Locale,
    string? TimeZone,
    IReadOnlyList<string> Tags,
    string AttributesJson,
    bool Suppressed,
    DateTimeOffset OccurredAt,
    // Added later: null from publishers that predate them (consumers then keep what they know).
    DateTimeOffset? CreatedAt = null,
    int? PushTokens = null);

/// <summary>Channel: email, sms, push, kakao. Purpose: marketing, transactional, marketing_night. Status: opted_in, opted_out.</summary>
public sealed record ConsentChanged(
    string TenantId,
    Guid ContactId,
    string Channel,
    string Purpose,
    string Status,
    string Source,
    DateTimeOffset OccurredAt,
    DateTimeOffset? ConsentedAt);

public sealed record ContactErased(string TenantId, Guid ContactId, DateTimeOffset OccurredAt);

public sealed record TransactionsRecorded(string TenantId, IReadOnlyList<RecordedOrder> Orders);

public sealed record RecordedOrder(
    Guid? ContactId,
    string OrderId,
    DateTimeOffset OccurredAt,
    string Currency,
    decimal Total,
    string Status,
    IReadOnlyList<string> Skus,
    IReadOnlyList<string> Categories,
    // Added later: the order's lines, null from publishers that predate them.
    IReadOnlyList<RecordedLine>? Lines = null);

/// <summary>One line of an order: Amount is quantity × unit price in the order's currency.</summary>
public sealed record RecordedLine(string Sku, string? Category, decimal Quantity, decimal Amount);

public sealed record EngagementRecorded(string TenantId, IReadOnlyList<RecordedEngagement> Events);

public sealed record RecordedEngagement(
    string EventId,
    Guid ContactId,
    string Type,
    string? Name,
    string? Channel,
    string? MessageId,
    string? CampaignId,
    DateTimeOffset OccurredAt,
    // Added later: the event's properties as a JSON object, null from publishers that predate it.
    string? PropertiesJson = null);
