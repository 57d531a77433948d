using System.Text.Json;
using Crm.Contracts.Delivery;
using Dapper;
using Npgsql;

namespace Crm.Delivery.Features.Webhooks;

/// <summary>
/// The event types a webhook endpoint subscribes to, and the queueing of deliveries for them. Deliveries are
/// written in the transaction that records the outcomes they announce (see Pipeline/Outcomes), so an outcome
/// recorded is an outcome announced, and one rolled back is never announced. One delivery per endpoint and
/// event (the unique event key), however often the same outcome is written.
/// </summary>
public static class WebhookEvents
{
    public const string MessageSent = "message.sent";
    public const string MessageFailed = "message.failed";
    public const string MessageSuppressed = "message.suppressed";

    /// <summary>What comes back (receipts, tracking, the unsubscribe link): queued with the observation that produced it.</summary>
    public const string MessageDelivered = "message.delivered";
    public const string MessageOpened = "message.opened";
    public const string MessageClicked = "message.clicked";
    public const string MessageUnsubscribed = "message.unsubscribed";

    public static readonly IReadOnlySet<string> All = new HashSet<string>(
        [MessageSent, MessageFailed, MessageSuppressed, MessageDelivered, MessageOpened, MessageClicked, MessageUnsubscribed], StringComparer.Ordinal);

    private static readonly JsonSerializerOptions Json = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

    /// <summary>One event: its type, what it is about (unique per type), and the body sent, {"type", "timestamp", "data"}.</summary>
    public sealed record Event(string Type, string Key, string Payload);

    public static Event Of(MessageSent m) => Create(MessageSent, m.MessageId, m.SentAt, new
    {
        m.MessageId, m.ContactId, m.Channel, CampaignId = m.CampaignId ?? "", m.ProviderMessageId, m.Segments,
    });

    public static Event Of(MessageFailed m) => Create(MessageFailed, m.MessageId, m.FailedAt, new
    {
        m.MessageId, m.ContactId, m.Channel, CampaignId = m.CampaignId ?? "", m.Reason,
    });

    public static Event Of(MessageSuppressed m) => Create(MessageSuppressed, m.MessageId, m.SuppressedAt, new
    {
        m.MessageId, m.ContactId, m.Channel, CampaignId = m.CampaignId ?? "", m.Reason, RuleId = m.RuleId ?? "",
    });

    /// <summary>An observation of a message (an open, a click, ...): <paramref name="key"/> is what makes it one, e.g. the link clicked.</summary>
    public static Event Observed(string type, string key, DateTimeOffset at, object data) =>
        new(type, $"{type}:{key}", Serialize(type, at, data));

    private static Event Create(string type, Guid messageId, DateTimeOffset at, object data) =>
        new(type, $"{type}:{messageId}", Serialize(type, at, data));

    private static string Serialize(string type, DateTimeOffset at, object data) =>
        JsonSerializer.Serialize(new { Type = type, Timestamp = at.UtcDateTime, Data = data }, Json);

    /// <summary>Queues a delivery of each event to every enabled endpoint of the tenant subscribed to its type.</summary>
    /// <returns>How many deliveries were queued.</returns>
    public static async Task<int> EnqueueAsync(NpgsqlConnection conn, NpgsqlTransaction tx, string tenant, IReadOnlyCollection<Event> events, DateTimeOffset now)
    {
        if (events.Count == 0) return 0;
        return await conn.ExecuteAsync("""
            INSERT INTO webhook_deliveries (tenant_id, delivery_id, endpoint_id, event_type, event_key, payload, next_attempt_at, created_at)
            SELECT @tenant, 'msg_' || replace(gen_random_uuid()::text, '-', ''), e.endpoint_id, ev.type, ev.key, ev.payload, @now, @now
            FROM unnest(@types, @keys, @payloads) AS ev(type, key, payload)
            JOIN webhook_endpoints e ON e.tenant_id = @tenant AND e.enabled AND ev.type = ANY (e.event_types)
            ON CONFLICT (tenant_id, endpoint_id, event_key) DO NOTHING
            """, new
        {
            tenant,
            now = now.UtcDateTime,
            types = events.Select(e => e.Type).ToArray(),
            keys = events.Select(e => e.Key).ToArray(),
            payloads = events.Select(e => e.Payload).ToArray(),
        }, tx);
    }
}
