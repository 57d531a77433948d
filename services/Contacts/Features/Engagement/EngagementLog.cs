using Crm.BuildingBlocks.Outbox;
using Crm.Contracts.Contacts;
using Dapper;
using Npgsql;

namespace Crm.Contacts.Features.Engagement;

/// <summary>
/// The one way engagement is stored, whoever reports it (RecordEngagement, Delivery's EngagementObserved):
/// an event is kept once by its id, and the events new to the log are announced in one EngagementRecorded,
/// in the same transaction.
/// </summary>
internal static class EngagementLog
{
    /// <param name="onlyKnownContacts">Drop events of contacts that are not (or no longer) in the workspace: an
    /// observation about an erased contact must not bring personal data back.</param>
    /// <returns>The ids of the events recorded now (not those recorded before).</returns>
    public static async Task<HashSet<string>> RecordAsync(NpgsqlConnection conn, NpgsqlTransaction tx, string tenant,
        IReadOnlyList<RecordedEngagement> events, bool onlyKnownContacts = false)
    {
        var inserted = (await conn.QueryAsync<string>("""
            INSERT INTO engagement_events (tenant_id, event_id, contact_id, type, name, channel, message_id, campaign_id, occurred_at, properties)
            SELECT @tenant, e.event_id, e.contact_id, e.type, e.name, e.channel, e.message_id, e.campaign_id, e.occurred_at, e.properties::jsonb
            FROM unnest(@eventIds, @contactIds, @types, @names, @channels, @messageIds, @campaignIds, @occurredAts, @properties)
                 AS e(event_id, contact_id, type, name, channel, message_id, campaign_id, occurred_at, properties)
            WHERE NOT @onlyKnownContacts
               OR EXISTS (SELECT 1 FROM contacts c WHERE c.tenant_id = @tenant AND c.contact_id = e.contact_id AND c.erased_at IS NULL)
            ON CONFLICT (tenant_id, event_id) DO NOTHING
            RETURNING event_id
            """, new
        {
            tenant,
            onlyKnownContacts,
            eventIds = events.Select(e => e.EventId).ToArray(),
            contactIds = events.Select(e => e.ContactId).ToArray(),
            types = events.Select(e => e.Type).ToArray(),
            names = events.Select(e => e.Name).ToArray(),
            channels = events.Select(e => e.Channel).ToArray(),
            messageIds = events.Select(e => e.MessageId).ToArray(),
            campaignIds = events.Select(e => e.CampaignId).ToArray(),
            occurredAts = events.Select(e => e.OccurredAt.UtcDateTime).ToArray(),
            properties = events.Select(e => e.PropertiesJson ?? "{}").ToArray(),
        }, tx)).ToHashSet(StringComparer.Ordinal);

        if (inserted.Count > 0)
            await Outbox.EnqueueAsync(conn, tx, new EngagementRecorded(tenant, events.Where(e => inserted.Contains(e.EventId)).ToArray()));
        return inserted;
    }
}
