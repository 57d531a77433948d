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

    private static Task<MessageRow?> FindAsync(NpgsqlConnection conn, string tenant, string key) =>
        conn.QuerySingleOrDefaultAsync<MessageRow>(
            $"SELECT {MessageRow.Columns} FROM messages WHERE tenant_id = @tenant AND idempotency_key = @key", new { tenant, key });
}
