using System.Globalization;
using Crm.BuildingBlocks.Data;
using Crm.BuildingBlocks.Outbox;
using Crm.Contracts.Segmentation;
using Crm.Segmentation.Features.Membership;
using Crm.Segmentation.V1;
using Dapper;
using Google.Protobuf.WellKnownTypes;

namespace Crm.Segmentation.Features.Leads;

/// <summary>
/// Lead scores. A contact's score is a function of the projections and the tenant's rules at an evaluation
/// time: the sum, over the events a rule matches (engagement, custom events with their properties, completed
/// orders), of the rule's points halved every <c>half_life_days</c> of the event's age, plus the points of each
/// attribute (fit) rule the profile matches now, counted once and not decaying. A rule's cap per day limits
/// what its events of one UTC day award, earliest first (Segmentation does not know the workspace's time zone).
///
/// So there is no ledger of awarded points: the refresh recomputes a batch of contacts in one statement, a rule
/// change simply marks the tenant's contacts for recomputation, and <see cref="ExplainAsync"/> lists the very
/// items the score is the sum of. Crossing the MQL threshold (qualified false → true) publishes LeadQualified,
/// in the batch's transaction, once; a score that decays below the threshold is unqualified, and qualifies —
/// and publishes — again when it rises over it.
/// </summary>
public sealed class LeadScoring(TimeProvider time) : IContactRefresher
{
    public int Order => 20;

    /// <summary>Events older than this many half-lives award nothing (2^-60 of their points), and are not read.</summary>
    private const int HalfLivesCounted = 60;

    /// <summary>Explained items returned at most (the score still counts them all).</summary>
    public const int MaxExplainedItems = 1000;

    public sealed record Settings(double MqlThreshold, double HalfLifeDays);

    public static async Task<Settings?> LoadSettingsAsync(TenantTransaction scope, CancellationToken ct) =>
        await scope.Connection.QuerySingleOrDefaultAsync<Settings>(new CommandDefinition(
            "SELECT mql_threshold AS MqlThreshold, half_life_days AS HalfLifeDays FROM lead_scoring_settings WHERE tenant_id = @tenant",
            new { tenant = scope.Tenant }, scope.Transaction, cancellationToken: ct));

    public async Task RefreshAsync(RefreshBatch batch, CancellationToken ct)
    {
        var settings = await LoadSettingsAsync(batch.Scope, ct);
        if (settings is null) return; // the tenant scores no leads
        var (conn, tx) = batch.Scope;
        var qualified = await conn.QueryAsync<(Guid ContactId, double Score)>(new CommandDefinition(ItemsSql + ScoreSql,
            ItemArgs(batch.Tenant, batch.Contacts, batch.Now, settings, new { threshold = settings.MqlThreshold }), tx, cancellationToken: ct));
        await Outbox.EnqueueManyAsync(conn, tx, qualified.Select(q =>
            new LeadQualified(batch.Tenant, q.ContactId, q.Score, settings.MqlThreshold, batch.Now)));
    }

    // The items a score is the sum of, for the contacts @contacts at @now: one per matching event (its points as
    // awarded under the rule's daily cap, and as decayed since), one per matching attribute rule.
    private const string ItemsSql = """
        WITH rules AS (
            SELECT rule_id, position, kind, event_type, event_name, match, points, max_points_per_day
            FROM lead_scoring_rules WHERE tenant_id = @tenant
        ), hits AS (
            SELECT e.contact_id, r.rule_id, r.position, r.kind, r.points, r.max_points_per_day, e.occurred_at, e.event_id AS ref
            FROM rules r
            JOIN engagement e ON e.tenant_id = @tenant AND e.contact_id = ANY(@contacts) AND e.type = r.event_type
             AND (r.event_name IS NULL OR e.name = r.event_name) AND e.properties @> r.match
             AND (@since::timestamptz IS NULL OR e.occurred_at > @since)
            WHERE r.kind IN ('engagement', 'custom_event')
            UNION ALL
            SELECT o.contact_id, r.rule_id, r.position, r.kind, r.points, r.max_points_per_day, o.occurred_at, o.order_id
            FROM rules r
            JOIN orders o ON o.tenant_id = @tenant AND o.contact_id = ANY(@contacts) AND o.status = 'completed'
             AND (@since::timestamptz IS NULL OR o.occurred_at > @since)
            WHERE r.kind = 'order'
        ), awarded AS (
            SELECT h.*, sign(h.points) * greatest(0, least(abs(h.points), CASE WHEN h.max_points_per_day > 0
                       THEN h.max_points_per_day - abs(h.points) * (row_number() OVER (
                            PARTITION BY h.contact_id, h.rule_id, (h.occurred_at AT TIME ZONE 'UTC')::date ORDER BY h.occurred_at, h.ref) - 1)
                       ELSE abs(h.points) END)) AS awarded
            FROM hits h
        ), items AS (
            SELECT contact_id, rule_id, position, kind, ref, occurred_at, points AS rule_points, awarded,
                   awarded * CASE WHEN @halfLife > 0
                       THEN power(0.5, greatest(0, extract(epoch FROM @now - occurred_at)::float8) / (@halfLife * 86400)) ELSE 1 END AS points
            FROM awarded
            UNION ALL
            SELECT c.contact_id, r.rule_id, r.position, r.kind, NULL, NULL, r.points, r.points, r.points
            FROM rules r
            JOIN contacts c ON c.tenant_id = @tenant AND c.contact_id = ANY(@contacts) AND c.attributes @> r.match
            WHERE r.kind = 'attribute'
        )
        """;

    // Scores every contact of the batch that exists, forgets the scores of those that do not (erased), and
    // returns the contacts that were not qualified before and are now.
    private const string ScoreSql = """
        , scored AS (
            SELECT c.contact_id, coalesce(sum(i.points), 0) AS score,
                   @halfLife > 0 AND coalesce(bool_or(i.occurred_at IS NOT NULL AND i.awarded <> 0), false) AS decays
            FROM contacts c LEFT JOIN items i ON i.contact_id = c.contact_id
            WHERE c.tenant_id = @tenant AND c.contact_id = ANY(@contacts)
            GROUP BY c.contact_id
        ), previous AS (
            SELECT contact_id, qualified FROM lead_scores WHERE tenant_id = @tenant AND contact_id = ANY(@contacts)
        ), gone AS (
            DELETE FROM lead_scores l WHERE l.tenant_id = @tenant AND l.contact_id = ANY(@contacts)
              AND NOT EXISTS (SELECT 1 FROM scored s WHERE s.contact_id = l.contact_id)
        ), written AS (
            INSERT INTO lead_scores (tenant_id, contact_id, score, qualified, qualified_at, computed_at, decays)
            SELECT @tenant, contact_id, score, score >= @threshold, CASE WHEN score >= @threshold THEN @now END, @now, decays
            FROM scored
            ON CONFLICT (tenant_id, contact_id) DO UPDATE SET
                score = excluded.score, qualified = excluded.qualified, computed_at = excluded.computed_at, decays = excluded.decays,
                qualified_at = CASE WHEN lead_scores.qualified AND excluded.qualified THEN lead_scores.qualified_at ELSE excluded.qualified_at END
            RETURNING contact_id, score, qualified
        )
        SELECT w.contact_id, w.score FROM written w
        WHERE w.qualified AND NOT coalesce((SELECT p.qualified FROM previous p WHERE p.contact_id = w.contact_id), false)
        """;

    private static DynamicParameters ItemArgs(string tenant, Guid[] contacts, DateTimeOffset now, Settings? settings, object? more = null)
    {
        var halfLife = settings?.HalfLifeDays ?? 0;
        now = new DateTimeOffset(now.UtcTicks - now.UtcTicks % 10, TimeSpan.Zero); // microseconds, as computed_at keeps it
        DateTimeOffset? since = halfLife > 0 ? now.AddDays(-halfLife * HalfLivesCounted) : null;
        var args = new DynamicParameters(more);
        args.AddDynamicParams(new { tenant, contacts, now, halfLife, since });
        return args;
    }

    /// <summary>
    /// The contact's score with the items it is the sum of (most recent first, fit first), evaluated when the score
    /// was last computed so that they add up to it; null when Segmentation does not know the contact.
    /// </summary>
    public async Task<LeadScore?> ExplainAsync(TenantTransaction scope, Guid contact, CancellationToken ct)
    {
        var (conn, tx) = scope;
        var stored = await conn.QuerySingleOrDefaultAsync<StoredScore>(new CommandDefinition("""
            SELECT score AS Score, qualified AS Qualified, qualified_at AS QualifiedAt, computed_at AS ComputedAt
            FROM lead_scores WHERE tenant_id = @tenant AND contact_id = @contact
            """, new { tenant = scope.Tenant, contact }, tx, cancellationToken: ct));
        if (stored is null && !await conn.ExecuteScalarAsync<bool>(new CommandDefinition(
                "SELECT EXISTS (SELECT 1 FROM contacts WHERE tenant_id = @tenant AND contact_id = @contact)",
                new { tenant = scope.Tenant, contact }, tx, cancellationToken: ct)))
            return null;

        var settings = await LoadSettingsAsync(scope, ct);
        var at = stored is null ? time.GetUtcNow() : new DateTimeOffset(stored.ComputedAt, TimeSpan.Zero);
        var rules = (await GetRulesAsync(scope, ct)).Rules.ToDictionary(r => r.RuleId, StringComparer.Ordinal);
        var items = (await conn.QueryAsync<ItemRow>(new CommandDefinition(ItemsSql + ExplainSql,
            ItemArgs(scope.Tenant, [contact], at, settings, new { limit = MaxExplainedItems }), tx, cancellationToken: ct))).AsList();

        var score = new LeadScore
        {
            ContactId = contact.ToString(),
            Score = stored?.Score ?? items.Sum(i => i.Points),
            Qualified = stored?.Qualified ?? false,
            QualifiedAt = stored?.QualifiedAt is { } q ? Timestamp.FromDateTime(q) : null,
            ComputedAt = Timestamp.FromDateTimeOffset(at),
        };
        score.Items.AddRange(items.Select(i => new LeadScoreItem
        {
            RuleId = i.RuleId,
            Reason = Reason(rules.GetValueOrDefault(i.RuleId), i),
            Awarded = i.Awarded,
            Points = i.Points,
            OccurredAt = i.OccurredAt is { } when ? Timestamp.FromDateTime(when) : null,
        }));
        return score;
    }

    private const string ExplainSql = """
        SELECT i.rule_id AS RuleId, i.kind AS Kind, i.ref AS Ref, i.occurred_at AS OccurredAt, i.rule_points AS RulePoints,
               i.awarded AS Awarded, i.points AS Points, e.type AS EventType, e.channel AS Channel, e.campaign_id AS CampaignId,
               o.total AS Total, o.currency AS Currency
        FROM items i
        LEFT JOIN engagement e ON i.kind IN ('engagement', 'custom_event') AND e.tenant_id = @tenant AND e.event_id = i.ref
        LEFT JOIN orders o ON i.kind = 'order' AND o.tenant_id = @tenant AND o.order_id = i.ref
        ORDER BY i.occurred_at DESC NULLS FIRST, i.position, i.ref
        LIMIT @limit
        """;

    private static string Reason(LeadScoringRule? rule, ItemRow i)
    {
        var what = rule is null ? i.RuleId : LeadRules.Describe(rule);
        var which = i.Kind switch
        {
            "order" => $"order {i.Ref} ({i.Total?.ToString("0.##", CultureInfo.InvariantCulture)} {i.Currency})",
            "attribute" => "the profile matches (counted once, no decay)",
            _ => $"event {i.Ref}" + (i.Channel is null ? "" : $" on {i.Channel}") + (i.CampaignId is null ? "" : $", campaign {i.CampaignId}"),
        };
        var capped = i.Awarded == i.RulePoints || rule is null ? ""
            : $"; capped at {rule.MaxPointsPerDay.ToString(CultureInfo.InvariantCulture)} points per UTC day";
        return $"{what}: {which}{capped}";
    }

    private sealed record StoredScore(double Score, bool Qualified, DateTime? QualifiedAt, DateTime ComputedAt);

    private sealed class ItemRow
    {
        public string RuleId { get; init; } = "";
        public string Kind { get; init; } = "";
        public string? Ref { get; init; }
        public DateTime? OccurredAt { get; init; }
        public double RulePoints { get; init; }
        public double Awarded { get; init; }
        public double Points { get; init; }
        public string? EventType { get; init; }
        public string? Channel { get; init; }
        public string? CampaignId { get; init; }
        public decimal? Total { get; init; }
        public string? Currency { get; init; }
    }

    public async Task<LeadScoringRules> GetRulesAsync(TenantTransaction scope, CancellationToken ct)
    {
        var settings = await LoadSettingsAsync(scope, ct);
        var definitions = await scope.Connection.QueryAsync<string>(new CommandDefinition(
            "SELECT definition::text FROM lead_scoring_rules WHERE tenant_id = @tenant ORDER BY position",
            new { tenant = scope.Tenant }, scope.Transaction, cancellationToken: ct));
        var rules = new LeadScoringRules { MqlThreshold = settings?.MqlThreshold ?? 0, HalfLifeDays = settings?.HalfLifeDays ?? 0 };
        rules.Rules.AddRange(definitions.Select(LeadRules.Parse));
        return rules;
    }

    /// <summary>Replaces the tenant's rules (validated by <see cref="LeadRules.Validate"/>) and marks every contact for rescoring.</summary>
    public async Task<LeadScoringRules> SetRulesAsync(TenantTransaction scope, LeadScoringRules rules, CancellationToken ct)
    {
        var (conn, tx) = scope;
        var rows = LeadRules.ToRows(rules);
        await conn.ExecuteAsync(new CommandDefinition("""
            INSERT INTO lead_scoring_settings (tenant_id, mql_threshold, half_life_days, updated_at)
            VALUES (@tenant, @threshold, @halfLife, @now)
            ON CONFLICT (tenant_id) DO UPDATE SET mql_threshold = excluded.mql_threshold, half_life_days = excluded.half_life_days,
                updated_at = excluded.updated_at;
            DELETE FROM lead_scoring_rules WHERE tenant_id = @tenant;
            INSERT INTO lead_scoring_rules (tenant_id, rule_id, position, definition, kind, event_type, event_name, match, points, max_points_per_day)
            SELECT @tenant, * FROM unnest(@ids, @positions, @definitions::jsonb[], @kinds, @eventTypes, @eventNames, @matches::jsonb[], @points, @caps)
            """, new
        {
            tenant = scope.Tenant, threshold = rules.MqlThreshold, halfLife = rules.HalfLifeDays, now = time.GetUtcNow(),
            ids = rows.Select(r => r.RuleId).ToArray(),
            positions = rows.Select(r => r.Position).ToArray(),
            definitions = rows.Select(r => r.Definition).ToArray(),
            kinds = rows.Select(r => r.Kind).ToArray(),
            eventTypes = rows.Select(r => r.EventType).ToArray(),
            eventNames = rows.Select(r => r.EventName).ToArray(),
            matches = rows.Select(r => r.Match).ToArray(),
            points = rows.Select(r => r.Points).ToArray(),
            caps = rows.Select(r => r.MaxPointsPerDay).ToArray(),
        }, tx, cancellationToken: ct));
        await TenantContacts.MarkAllDirtyAsync(scope, ct);
        return await GetRulesAsync(scope, ct);
    }
}

/// <summary>Decay moves scores with no event: the contacts whose score has decaying points are rescored on a schedule.</summary>
public sealed class LeadScoreDecay(TenantDb db, TimeProvider time, IConfiguration configuration, ILogger<LeadScoreDecay> logger)
    : ClockDrivenMarking(db, time, IntervalSetting(configuration, "LeadScoreInterval"), logger)
{
    protected override string TenantsSql => "SELECT tenant_id FROM lead_scoring_settings WHERE half_life_days > 0";

    protected override string MarkSql => """
        INSERT INTO dirty_contacts (tenant_id, contact_id)
        SELECT tenant_id, contact_id FROM lead_scores WHERE tenant_id = @tenant AND decays
        ON CONFLICT (tenant_id, contact_id) DO UPDATE SET marked_at = now()
        """;
}

public static class LeadsRegistration
{
    public static IServiceCollection AddLeadScoring(this IServiceCollection services, IConfiguration configuration)
    {
        // Segmentation:LeadScoreInterval (default 1 h): how often decaying scores are recomputed.
        return services.AddRefresher<LeadScoring, LeadScoreDecay>();
    }
}
