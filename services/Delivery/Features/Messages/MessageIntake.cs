using Crm.BuildingBlocks.Data;
using Crm.BuildingBlocks.Errors;
using Crm.Contracts.Delivery;
using Crm.Delivery.Channels;
using Dapper;
using Npgsql;
using StackExchange.Redis;

namespace Crm.Delivery.Features.Messages;

/// <summary>
/// Accepts a message exactly once per idempotency key: a Redis SET NX answers repeats without
/// touching PostgreSQL, and the unique (tenant, key) row is the truth when Redis does not know.
/// </summary>
public sealed class MessageIntake(TenantDb db, IConnectionMultiplexer redis, DeliveryOptions options, TimeProvider clock)
{
    private static readonly TimeSpan RememberKeysFor = TimeSpan.FromDays(7);

    public static void Validate(DeliveryRequest r, string path, Validation v, ChannelRegistry channels)
    {
        if (r.IdempotencyKey.Length is 0 or > 200) v.Add($"{path}idempotency_key", "is required (1 to 200 characters)");
        if (r.ContactId == Guid.Empty) v.Add($"{path}contact_id", "is required");
        var channel = channels.Find(r.Channel);
        if (channel is null) v.Add($"{path}channel", $"must be one of {channels.Names}");
        if (r.Purpose is not ("marketing" or "transactional")) v.Add($"{path}purpose", "must be marketing or transactional");
        if (string.IsNullOrEmpty(r.TextBody) && string.IsNullOrEmpty(r.HtmlBody)) v.Add($"{path}text_body", "a body is required");
        if (r.OnCap is not ("suppress" or "defer")) v.Add($"{path}on_cap", "must be suppress or defer");
        if ((r.QuietStart is not null || r.QuietEnd is not null) && !Pipeline.SendingWindow.TryParseWindow(r.QuietStart, r.QuietEnd, out _))
            v.Add($"{path}quiet_start", "quiet_start and quiet_end must both be HH:mm");
        channel?.Validate(r, path, v);
        for (var i = 0; i < (r.Fallback?.Count ?? 0); i++)
        {
            var next = channels.Find(r.Fallback![i]);
            if (next is null) v.Add($"{path}fallback[{i}]", $"must be one of {channels.Names}");
            else if (next.Name == r.Channel || r.Fallback.Take(i).Contains(next.Name)) v.Add($"{path}fallback[{i}]", "names a channel already tried");
            else next.Validate(r, path, v);
        }
        if (r.SendAt is { } sendAt)
        {
            if (sendAt > DateTimeOffset.UtcNow.AddDays(366)) v.Add($"{path}send_at", "is more than a year ahead");
            if (r.ExpiresAt is { } expires && expires <= sendAt) v.Add($"{path}send_at", "is not before expires_at: the message would expire unsent");
        }
    }

    /// <summary>The campaigns among these messages' that were cancelled with CancelMessages, with the reason to suppress them with.</summary>
    public async Task<IReadOnlyDictionary<string, string>> CancelledCampaignsAsync(string tenant, IEnumerable<MessageRow> messages, CancellationToken ct)
    {
        var campaigns = messages.Select(m => m.CampaignId).OfType<string>().Distinct().ToArray();
        if (campaigns.Length == 0) return new Dictionary<string, string>();
        await using var scope = await db.BeginAsync(tenant, ct);
        return (await scope.Connection.QueryAsync<(string CampaignId, string Reason)>(new CommandDefinition(
            "SELECT campaign_id, reason FROM cancelled_campaigns WHERE tenant_id = @tenant AND campaign_id = ANY(@campaigns)",
            new { tenant, campaigns }, scope.Transaction, cancellationToken: ct))).ToDictionary(c => c.CampaignId, c => c.Reason);
    }

    /// <summary>
    /// Accepts a batch (an API call or a DeliverMessage command) exactly once per idempotency key: a
    /// pipelined Redis SET NX answers repeats without touching PostgreSQL, and the unique (tenant, key)
    /// row is the truth when Redis does not know. One round trip to each for the whole batch. New
    /// messages are inserted already claimed by this worker, so they go straight into the pipeline.
    /// </summary>
    /// <returns>The new messages (claimed, for the pipeline now), the new scheduled ones (deferred to their
    /// send_at, for the deferred poller), and the ids of repeats of keys accepted before (by key).</returns>
    /// <param name="ignoreCapsRequestedBy">Who asked for the messages that ignore caps (a token's subject, e.g. api-key:&lt;id&gt;),
    /// after the caller was checked for the admin scope; recorded on their timelines. Without it no message may ignore caps.</param>
    public async Task<(IReadOnlyList<MessageRow> Claimed, IReadOnlyList<MessageRow> Scheduled, IReadOnlyDictionary<string, Guid> Repeats)> AcceptManyAsync(
        string tenant, IReadOnlyList<DeliveryRequest> requests, TimeSpan lease, CancellationToken ct, string? ignoreCapsRequestedBy = null)
    {
        if (ignoreCapsRequestedBy is null && requests.Any(r => r.IgnoreCaps))
            throw new InvalidOperationException("A message may ignore caps only at the request of a caller with the admin scope.");
        var ids = requests.Select(_ => Guid.CreateVersion7()).ToArray();
        var database = redis.GetDatabase();
        var firsts = await Task.WhenAll(requests.Select((r, i) => database.StringSetAsync(
            $"{options.RedisKeyPrefix}{{t:{tenant}}}:idem:{r.IdempotencyKey}", ids[i].ToString("N"), RememberKeysFor, When.NotExists)));
        var fresh = Enumerable.Range(0, requests.Count).Where(i => firsts[i]).ToList();
        var now = clock.GetUtcNow().UtcDateTime;
        await using var scope = await db.BeginAsync(tenant, ct);
        var conn = scope.Connection;

        async Task<List<MessageRow>> InsertClaimedAsync(List<int> take)
        {
            if (take.Count == 0) return [];
            R[] Col<R>(Func<DeliveryRequest, R> pick) => take.Select(i => pick(requests[i])).ToArray();
            // A scheduled message (send_at ahead) is inserted deferred, with its timeline step in the same statement.
            return (await conn.QueryAsync<MessageRow>($"""
                WITH inserted AS (
                INSERT INTO messages (tenant_id, message_id, idempotency_key, contact_id, channel, purpose, campaign_id, category,
                    subject, text_body, html_body, on_cap, ignore_caps, expires_at, quiet_start, quiet_end, provider_account_id,
                    status, reason, claimed_until, created_at, updated_at, not_before, fallback, template_code, template_parameters)
                SELECT @tenant, r.id, r.key, r.contact_id, r.channel, r.purpose, r.campaign_id, r.category,
                    r.subject, r.text_body, r.html_body, r.on_cap, r.ignore_caps, r.expires_at, r.quiet_start, r.quiet_end, r.account,
                    CASE WHEN r.send_at > @now THEN 'deferred' ELSE 'accepted' END,
                    CASE WHEN r.send_at > @now THEN 'scheduled' ELSE '' END,
                    CASE WHEN r.send_at > @now THEN NULL ELSE @until END, @now, @now,
                    CASE WHEN r.send_at > @now THEN r.send_at END,
                    string_to_array(r.fallback, ','), r.template_code, r.template_parameters::jsonb
                FROM unnest(@ids, @keys, @contactIds, @channels, @purposes, @campaignIds, @categories, @subjects, @textBodies, @htmlBodies,
                            @onCaps, @ignoreCaps, @expiresAts, @quietStarts, @quietEnds, @accounts, @sendAts,
                            @fallbacks, @templateCodes, @templateParameters)
                     AS r(id, key, contact_id, channel, purpose, campaign_id, category, subject, text_body, html_body, on_cap, ignore_caps,
                          expires_at, quiet_start, quiet_end, account, send_at, fallback, template_code, template_parameters)
                ON CONFLICT (tenant_id, idempotency_key) DO NOTHING
                RETURNING {MessageRow.Columns}),
                scheduled AS (
                    INSERT INTO message_events (tenant_id, message_id, status, reason, at)
                    SELECT tenant_id, message_id, 'deferred', 'scheduled', created_at FROM inserted WHERE status = 'deferred'),
                caps_ignored AS (
                    INSERT INTO message_events (tenant_id, message_id, status, reason, at)
                    SELECT tenant_id, message_id, 'accepted', @capsIgnored, created_at FROM inserted WHERE ignore_caps)
                SELECT * FROM inserted
                """, new
            {
                tenant, now, until = now + lease, capsIgnored = $"frequency caps ignored at the request of {ignoreCapsRequestedBy}",
                ids = take.Select(i => ids[i]).ToArray(),
                keys = Col(r => r.IdempotencyKey), contactIds = Col(r => r.ContactId), channels = Col(r => r.Channel), purposes = Col(r => r.Purpose),
                campaignIds = Col(r => r.CampaignId), categories = Col(r => r.Category), subjects = Col(r => r.Subject),
                textBodies = Col(r => r.TextBody), htmlBodies = Col(r => r.HtmlBody), onCaps = Col(r => r.OnCap), ignoreCaps = Col(r => r.IgnoreCaps),
                expiresAts = Col(r => r.ExpiresAt?.UtcDateTime),
                quietStarts = Col(r => r.QuietStart), quietEnds = Col(r => r.QuietEnd), accounts = Col(r => r.ProviderAccountId),
                sendAts = Col(r => r.SendAt?.UtcDateTime),
                // A list per row cannot travel in unnest (arrays of arrays are flattened): channel names carry no comma.
                fallbacks = Col(r => string.Join(',', r.Fallback ?? [])), templateCodes = Col(r => r.TemplateCode),
                templateParameters = Col(r => r.TemplateParameters is { Count: > 0 } p ? System.Text.Json.JsonSerializer.Serialize(p) : null),
            })).AsList();
        }

        var claimed = await InsertClaimedAsync(fresh);
        if (claimed.Count == requests.Count)
        {
            await scope.CommitAsync(ct);
            return SplitScheduled(claimed, new Dictionary<string, Guid>());
        }
        // Keys Redis or the unique row had seen: their messages, wherever they are in the pipeline.
        var mine = claimed.Select(m => m.IdempotencyKey).ToHashSet(StringComparer.Ordinal);
        var repeats = await conn.QueryAsync<(string Key, Guid MessageId)>(
            "SELECT k.key, m.message_id FROM unnest(@keys) AS k(key) CROSS JOIN LATERAL (SELECT message_id FROM messages WHERE tenant_id = @tenant AND idempotency_key = k.key LIMIT 1) m",
            new { tenant, keys = requests.Select(r => r.IdempotencyKey).Where(k => !mine.Contains(k)).Distinct().ToArray() });
        var known = repeats.ToDictionary(r => r.Key, r => r.MessageId, StringComparer.Ordinal);
        // A key Redis remembers but PostgreSQL does not (its insert after the SET NX never committed):
        // the row is the truth, so the message is accepted now rather than lost.
        var lost = Enumerable.Range(0, requests.Count)
            .Where(i => !mine.Contains(requests[i].IdempotencyKey) && !known.ContainsKey(requests[i].IdempotencyKey)).ToList();
        claimed.AddRange(await InsertClaimedAsync(lost));
        await scope.CommitAsync(ct);
        return SplitScheduled(claimed, known);
    }

    /// <summary>Scheduled messages (inserted deferred to their send_at) wait for the deferred poller; the rest go on now.</summary>
    private static (IReadOnlyList<MessageRow>, IReadOnlyList<MessageRow>, IReadOnlyDictionary<string, Guid>) SplitScheduled(
        List<MessageRow> inserted, IReadOnlyDictionary<string, Guid> repeats) =>
        ([.. inserted.Where(m => m.Status != "deferred")], [.. inserted.Where(m => m.Status == "deferred")], repeats);
}
