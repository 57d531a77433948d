using System.Text.Json;
using Crm.BuildingBlocks.Outbox;
using Crm.Contracts.Delivery;
using Crm.Delivery.Features.Webhooks;
using Dapper;
using Npgsql;

namespace Crm.Delivery.Features.Engagement;

/// <summary>The message an observation is about, as Delivery recorded it.</summary>
public sealed record ObservedMessage(Guid MessageId, Guid ContactId, string Channel, string Purpose, string? CampaignId, DateTime? SentAt);

/// <summary>
/// The one path of everything that comes back from a message — a delivery receipt, an open, a click, a bounce,
/// a complaint, an unsubscribe — into engagement: one row per observation under its dedupe key, and for each
/// row new to the table an EngagementObserved (Contacts records it as engagement; Segmentation hears of it
/// from there) and the customer webhook it stands for, all in the caller's transaction. However often a
/// provider (or a recipient's mail client) repeats itself, an observation counts once.
/// </summary>
public static class EngagementObservations
{
    /// <param name="Key">The dedupe key: what makes this observation one (open:&lt;message&gt;, click:&lt;message&gt;:&lt;link&gt;, ...).</param>
    /// <param name="Type">delivered, opened, machine_opened, clicked, bounced, complained, unsubscribed.</param>
    /// <param name="WebhookType">The customer webhook event it is announced as (none for machine opens, bounces, complaints).</param>
    public sealed record Observation(ObservedMessage Message, string Type, string Key, DateTimeOffset At,
        IReadOnlyDictionary<string, string>? Properties = null, string? WebhookType = null);

    private const string Columns =
        "m.message_id AS MessageId, m.contact_id AS ContactId, m.channel AS Channel, m.purpose AS Purpose, m.campaign_id AS CampaignId, m.sent_at AS SentAt";

    public static Task<ObservedMessage?> FindAsync(NpgsqlConnection conn, NpgsqlTransaction tx, string tenant, Guid messageId) =>
        conn.QuerySingleOrDefaultAsync<ObservedMessage?>(
            $"SELECT {Columns} FROM messages m WHERE m.tenant_id = @tenant AND m.message_id = @messageId", new { tenant, messageId }, tx);

    /// <summary>By the provider's id of the message (an email's Message-Id, a Twilio SID), as indexed for receipts.</summary>
    public static Task<ObservedMessage?> FindByProviderIdAsync(NpgsqlConnection conn, NpgsqlTransaction tx, string tenant, string providerMessageId) =>
        conn.QuerySingleOrDefaultAsync<ObservedMessage?>($"""
            SELECT {Columns}
            FROM message_provider_ids p JOIN messages m ON m.tenant_id = p.tenant_id AND m.message_id = p.message_id
            WHERE p.tenant_id = @tenant AND p.provider_message_id = @providerMessageId
            LIMIT 1
            """, new { tenant, providerMessageId }, tx);

    /// <returns>The observations new to the table (announced now); repeats are left out.</returns>
    public static async Task<IReadOnlyList<Observation>> RecordAsync(NpgsqlConnection conn, NpgsqlTransaction tx, string tenant,
        IReadOnlyList<Observation> observations, DateTimeOffset now)
    {
        if (observations.Count == 0) return [];
        var properties = observations.Select(o => JsonSerializer.Serialize(o.Properties ?? new Dictionary<string, string>())).ToArray();
        var inserted = (await conn.QueryAsync<string>("""
            INSERT INTO engagement_observations (tenant_id, observation_key, message_id, contact_id, type, properties, occurred_at)
            SELECT @tenant, o.key, o.message_id, o.contact_id, o.type, o.properties::jsonb, o.at
            FROM unnest(@keys, @messageIds, @contactIds, @types, @properties, @ats) AS o(key, message_id, contact_id, type, properties, at)
            ON CONFLICT (tenant_id, observation_key) DO NOTHING
            RETURNING observation_key
            """, new
        {
            tenant,
            keys = observations.Select(o => o.Key).ToArray(),
            messageIds = observations.Select(o => o.Message.MessageId).ToArray(),
            contactIds = observations.Select(o => o.Message.ContactId).ToArray(),
            types = observations.Select(o => o.Type).ToArray(),
            properties,
            ats = observations.Select(o => o.At.UtcDateTime).ToArray(),
        }, tx)).ToHashSet(StringComparer.Ordinal);
        var fresh = observations.Select((o, i) => (o, i)).Where(x => inserted.Remove(x.o.Key)).ToList();
        if (fresh.Count == 0) return [];

        await Outbox.EnqueueAsync(conn, tx, new EngagementObserved(tenant, fresh.Select(x => new ObservedEngagement(
            $"delivery:{x.o.Key}", x.o.Message.ContactId, x.o.Type, x.o.Message.Channel, x.o.Message.MessageId, x.o.Message.CampaignId,
            x.o.At, properties[x.i])).ToArray()));
        await WebhookEvents.EnqueueAsync(conn, tx, tenant, fresh.Where(x => x.o.WebhookType is not null).Select(x =>
        {
            var data = new Dictionary<string, object?>
            {
                ["message_id"] = x.o.Message.MessageId, ["contact_id"] = x.o.Message.ContactId,
                ["channel"] = x.o.Message.Channel, ["campaign_id"] = x.o.Message.CampaignId ?? "",
            };
            foreach (var (k, v) in x.o.Properties ?? new Dictionary<string, string>()) data[k] = v;
            return WebhookEvents.Observed(x.o.WebhookType!, x.o.Key, x.o.At, data);
        }).ToList(), now);
        return fresh.Select(x => x.o).ToList();
    }
}
