namespace Crm.Contracts.Segmentation;

// Integration events published by the Segmentation service through its outbox.

/// <summary>Contacts that entered or left a segment, in one batch of re-evaluation.</summary>
public sealed record SegmentMembershipChanged(
    string TenantId,
    Guid SegmentId,
    IReadOnlyList<Guid> Entered,
    IReadOnlyList<Guid> Left,
    DateTimeOffset OccurredAt);

/// <summary>A contact's lead score crossed the tenant's MQL threshold (again only after falling below it).</summary>
public sealed record LeadQualified(string TenantId, Guid ContactId, double Score, double Threshold, DateTimeOffset OccurredAt);

/// <summary>A contact moved between membership tiers; an empty tier is below the lowest.</summary>
public sealed record TierChanged(string TenantId, Guid ContactId, string? From, string? To, double Value, DateTimeOffset OccurredAt);
