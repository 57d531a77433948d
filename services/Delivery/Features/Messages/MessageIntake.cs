using Crm.BuildingBlocks.Errors;
using Crm.Contracts.Delivery;
using Dapper;
using Npgsql;
using StackExchange.Redis;

namespace Crm.Delivery.Features.Messages;

/// <summary>
/// Accepts a message exactly once per idempotency key: a Redis SET NX answers repeats without
/// touching PostgreSQL, and the unique (tenant, key) row is the truth when Redis does not know.
/// </summary>
public sealed class MessageIntake(NpgsqlDataSource db, IConnectionMultiplexer redis, DeliveryOptions options, TimeProvider clock)
{
    private static readonly TimeSpan RememberKeysFor = TimeSpan.FromDays(7);

    public static void Validate(DeliveryRequest r, string path, Validation v)
    {
        if (r.IdempotencyKey.Length is 0 or > 200) v.Add($"{path}idempotency_key", "is required (1 to 200 characters)");
        if (r.ContactId == Guid.Empty) v.Add($"{path}contact_id", "is required");
        if (r.Channel is not ("email" or "sms")) v.Add($"{path}channel", "must be email or sms");
        if (r.Purpose is not ("marketing" or "transactional")) v.Add($"{path}purpose", "must be marketing or transactional");
        if (string.IsNullOrEmpty(r.TextBody) && string.IsNullOrEmpty(r.HtmlBody)) v.Add($"{path}text_body", "a body is required");
        if (r.Channel == "email" && string.IsNullOrEmpty(r.Subject)) v.Add($"{path}subject", "is required for email");
        if (r.OnCap is not ("suppress" or "defer")) v.Add($"{path}on_cap", "must be suppress or defer");
    }

    /// <returns>The message, and whether this call created it (false: a repeat of an earlier key).</returns>
    public async Task<(MessageRow Message, bool Created)> AcceptAsync(string tenant, DeliveryRequest r, string? quietStart = null,
        string? quietEnd = null, string? providerAccountId = null, CancellationToken ct = default)
    {
        var messageId = Guid.CreateVersion7();
        var key = $"{options.RedisKeyPrefix}{{t:{tenant}}}:idem:{r.IdempotencyKey}";
        var first = await redis.GetDatabase().StringSetAsync(key, messageId.ToString("N"), RememberKeysFor, When.NotExists);
        await using var conn = await db.OpenConnectionAsync(ct);
        if (!first && await FindAsync(conn, tenant, r.IdempotencyKey) is { } known) return (known, false);

        var now = clock.GetUtcNow().UtcDateTime;
        var inserted = await conn.QuerySingleOrDefaultAsync<MessageRow>($"""
            WITH m AS (
                INSERT INTO messages (tenant_id, message_id, idempotency_key, contact_id, channel, purpose, campaign_id, category,
                    subject, text_body, html_body, quiet_start, quiet_end, on_cap, ignore_caps, expires_at, provider_account_id,
                    status, reason, created_at, updated_at)
                VALUES (@tenant, @messageId, @IdempotencyKey, @ContactId, @Channel, @Purpose, @CampaignId, @Category,
                    @Subject, @TextBody, @HtmlBody, @quietStart, @quietEnd, @OnCap, @IgnoreCaps, @expiresAt, @providerAccountId,
                    'accepted', '', @now, @now)
                ON CONFLICT (tenant_id, idempotency_key) DO NOTHING
                RETURNING {MessageRow.Columns}),
            e AS (
                INSERT INTO message_events (tenant_id, message_id, status, reason, at)
                SELECT tenant_id, message_id, 'accepted', '', @now FROM m)
            SELECT {MessageRow.Columns} FROM m
            """, new
        {
            tenant, messageId, r.IdempotencyKey, r.ContactId, r.Channel, r.Purpose, r.CampaignId, r.Category, r.Subject, r.TextBody, r.HtmlBody,
            quietStart, quietEnd, r.OnCap, r.IgnoreCaps, expiresAt = r.ExpiresAt?.UtcDateTime, providerAccountId, now,
        });
        return inserted is not null ? (inserted, true) : ((await FindAsync(conn, tenant, r.IdempotencyKey))!, false);
    }

    /// <summary>
    /// Accepts a batch (a DeliverMessage command): one pipelined Redis round trip and one insert. New
    /// messages are inserted already claimed by this worker, so they go straight into the pipeline.
    /// </summary>
    /// <returns>The new messages (claimed), and the ids of repeats of keys accepted before.</returns>
    public async Task<(IReadOnlyList<MessageRow> Claimed, IReadOnlyList<Guid> Repeats)> AcceptManyAsync(
        string tenant, IReadOnlyList<DeliveryRequest> requests, TimeSpan lease, CancellationToken ct)
    {
        var ids = requests.Select(_ => Guid.CreateVersion7()).ToArray();
        var database = redis.GetDatabase();
        var firsts = await Task.WhenAll(requests.Select((r, i) => database.StringSetAsync(
            $"{options.RedisKeyPrefix}{{t:{tenant}}}:idem:{r.IdempotencyKey}", ids[i].ToString("N"), RememberKeysFor, When.NotExists)));
        var fresh = Enumerable.Range(0, requests.Count).Where(i => firsts[i]).ToList();
        var now = clock.GetUtcNow().UtcDateTime;
        await using var conn = await db.OpenConnectionAsync(ct);
        var claimed = new List<MessageRow>();
        if (fresh.Count > 0)
        {
            R[] Col<R>(Func<DeliveryRequest, R> pick) => fresh.Select(i => pick(requests[i])).ToArray();
            claimed = (await conn.QueryAsync<MessageRow>($"""
                WITH m AS (
                    INSERT INTO messages (tenant_id, message_id, idempotency_key, contact_id, channel, purpose, campaign_id, category,
                        subject, text_body, html_body, on_cap, ignore_caps, expires_at, status, reason, claimed_until, created_at, updated_at)
                    SELECT @tenant, r.id, r.key, r.contact_id, r.channel, r.purpose, r.campaign_id, r.category,
                        r.subject, r.text_body, r.html_body, r.on_cap, r.ignore_caps, r.expires_at, 'accepted', '', @until, @now, @now
                    FROM unnest(@ids, @keys, @contactIds, @channels, @purposes, @campaignIds, @categories, @subjects, @textBodies, @htmlBodies,
                                @onCaps, @ignoreCaps, @expiresAts)
                         AS r(id, key, contact_id, channel, purpose, campaign_id, category, subject, text_body, html_body, on_cap, ignore_caps, expires_at)
                    ON CONFLICT (tenant_id, idempotency_key) DO NOTHING
                    RETURNING {MessageRow.Columns}),
                e AS (
                    INSERT INTO message_events (tenant_id, message_id, status, reason, at) SELECT @tenant, message_id, 'accepted', '', @now FROM m)
                SELECT {MessageRow.Columns} FROM m
                """, new
            {
                tenant, now, until = now + lease,
                ids = fresh.Select(i => ids[i]).ToArray(),
                keys = Col(r => r.IdempotencyKey), contactIds = Col(r => r.ContactId), channels = Col(r => r.Channel), purposes = Col(r => r.Purpose),
                campaignIds = Col(r => r.CampaignId), categories = Col(r => r.Category), subjects = Col(r => r.Subject),
                textBodies = Col(r => r.TextBody), htmlBodies = Col(r => r.HtmlBody), onCaps = Col(r => r.OnCap), ignoreCaps = Col(r => r.IgnoreCaps),
                expiresAts = Col(r => r.ExpiresAt?.UtcDateTime),
            })).AsList();
        }
        if (claimed.Count == requests.Count) return (claimed, []);
        // Keys Redis or the unique row had seen: their messages, wherever they are in the pipeline.
        var mine = claimed.Select(m => m.IdempotencyKey).ToHashSet(StringComparer.Ordinal);
        var repeats = (await conn.QueryAsync<Guid>(
            "SELECT m.message_id FROM unnest(@keys) AS k(key) CROSS JOIN LATERAL (SELECT message_id FROM messages WHERE tenant_id = @tenant AND idempotency_key = k.key LIMIT 1) m",
            new { tenant, keys = requests.Select(r => r.IdempotencyKey).Where(k => !mine.Contains(k)).ToArray() })).AsList();
        return (claimed, repeats);
    }

    private static Task<MessageRow?> FindAsync(NpgsqlConnection conn, string tenant, string key) =>
        conn.QuerySingleOrDefaultAsync<MessageRow>(
            $"SELECT {MessageRow.Columns} FROM messages WHERE tenant_id = @tenant AND idempotency_key = @key", new { tenant, key });
}
