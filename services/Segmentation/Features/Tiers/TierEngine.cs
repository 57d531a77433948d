using System.Globalization;
using Crm.BuildingBlocks.Data;
using Crm.BuildingBlocks.Errors;
using Crm.BuildingBlocks.Outbox;
using Crm.Contracts.Segmentation;
using Crm.Segmentation.Features.Membership;
using Crm.Segmentation.V1;
using Dapper;
using Google.Protobuf.WellKnownTypes;

namespace Crm.Segmentation.Features.Tiers;

/// <summary>
/// Membership tiers: a contact's value is the spend (sum of totals, currencies not converted) or the number of
/// their completed orders in the trailing window before now, and their tier the highest whose minimum the value
/// reaches (none below the lowest). The refresh re-evaluates the contacts orders touched, in one statement per
/// batch, and publishes TierChanged in the batch's transaction only when the tier differs from the stored one.
/// Orders leaving the window move tiers too, with no event: <see cref="TierWindowMarking"/> marks those contacts.
/// </summary>
public sealed class TierEngine(TimeProvider time) : IContactRefresher
{
    public int Order => 10;

    public const int DefaultWindowDays = 365;
    public const int MaxTiers = 20;

    private sealed class Settings
    {
        public string Measure { get; init; } = "";
        public int WindowDays { get; init; }
        public string[] Names { get; init; } = [];
        public decimal[] MinValues { get; init; } = [];
    }

    private static Task<Settings?> LoadAsync(TenantTransaction scope, CancellationToken ct) =>
        scope.Connection.QuerySingleOrDefaultAsync<Settings?>(new CommandDefinition(
            "SELECT measure AS Measure, window_days AS WindowDays, names AS Names, min_values AS MinValues FROM tier_settings WHERE tenant_id = @tenant",
            new { tenant = scope.Tenant }, scope.Transaction, cancellationToken: ct));

    public async Task RefreshAsync(RefreshBatch batch, CancellationToken ct)
    {
        var settings = await LoadAsync(batch.Scope, ct);
        if (settings is null) return; // the tenant has no tiers
        var (conn, tx) = batch.Scope;
        var now = batch.Now.ToUniversalTime();
        var changes = await conn.QueryAsync<Change>(new CommandDefinition(RefreshSql, new
        {
            tenant = batch.Tenant, contacts = batch.Contacts, now, since = now.AddDays(-settings.WindowDays),
            spend = settings.Measure == "spend", names = settings.Names, mins = settings.MinValues,
        }, tx, cancellationToken: ct));
        await Outbox.EnqueueManyAsync(conn, tx, changes.Select(c => new TierChanged(batch.Tenant, c.ContactId, c.From, c.To, (double)c.Value, now)));
    }

    // Places every contact of the batch that exists, keeps a row for those in a tier or with a value, and returns
    // the contacts whose tier is not the one stored.
    private const string RefreshSql = """
        WITH levels AS (
            SELECT * FROM unnest(@names::text[], @mins::numeric[]) AS l(name, min_value)
        ), valued AS (
            SELECT c.contact_id, CASE WHEN @spend THEN coalesce(sum(o.total), 0) ELSE count(o.order_id) END AS value
            FROM contacts c
            LEFT JOIN orders o ON o.tenant_id = @tenant AND o.contact_id = c.contact_id AND o.status = 'completed' AND o.occurred_at > @since
            WHERE c.tenant_id = @tenant AND c.contact_id = ANY(@contacts)
            GROUP BY c.contact_id
        ), placed AS (
            SELECT v.contact_id, v.value,
                   (SELECT l.name FROM levels l WHERE l.min_value <= v.value ORDER BY l.min_value DESC LIMIT 1) AS tier
            FROM valued v
        ), previous AS (
            SELECT contact_id, tier FROM contact_tiers WHERE tenant_id = @tenant AND contact_id = ANY(@contacts)
        ), gone AS (
            DELETE FROM contact_tiers t WHERE t.tenant_id = @tenant AND t.contact_id = ANY(@contacts)
              AND NOT EXISTS (SELECT 1 FROM placed p WHERE p.contact_id = t.contact_id AND (p.tier IS NOT NULL OR p.value > 0))
        ), written AS (
            INSERT INTO contact_tiers (tenant_id, contact_id, tier, value, since)
            SELECT @tenant, contact_id, tier, value, @now FROM placed WHERE tier IS NOT NULL OR value > 0
            ON CONFLICT (tenant_id, contact_id) DO UPDATE SET value = excluded.value, tier = excluded.tier,
                since = CASE WHEN contact_tiers.tier IS NOT DISTINCT FROM excluded.tier THEN contact_tiers.since ELSE excluded.since END
        )
        SELECT p.contact_id AS ContactId, prev.tier AS "From", p.tier AS "To", p.value AS Value
        FROM placed p LEFT JOIN previous prev ON prev.contact_id = p.contact_id
        WHERE p.tier IS DISTINCT FROM prev.tier
        """;

    private sealed record Placement(string? Tier, decimal Value, DateTime Since);

    private sealed class Change
    {
        public Guid ContactId { get; init; }
        public string? From { get; init; }
        public string? To { get; init; }
        public decimal Value { get; init; }
    }

    /// <summary>A contact's tier and why (for ListContactSegments); null when they have no tier row.</summary>
    public static async Task<ContactTier?> GetContactTierAsync(TenantTransaction scope, Guid contact, CancellationToken ct)
    {
        var settings = await LoadAsync(scope, ct);
        var r = await scope.Connection.QuerySingleOrDefaultAsync<Placement>(new CommandDefinition(
            "SELECT tier AS Tier, value AS Value, since AS Since FROM contact_tiers WHERE tenant_id = @tenant AND contact_id = @contact",
            new { tenant = scope.Tenant, contact }, scope.Transaction, cancellationToken: ct));
        if (settings is null || r is null) return null;
        var measured = settings.Measure == "spend"
            ? $"spent {r.Value.ToString("0.##", CultureInfo.InvariantCulture)}"
            : $"{r.Value.ToString("0", CultureInfo.InvariantCulture)} completed order{(r.Value == 1 ? "" : "s")}";
        var i = r.Tier is null ? -1 : Array.IndexOf(settings.Names, r.Tier);
        var why = $"{measured} in the last {settings.WindowDays} days" + (i < 0
            ? $", below the lowest tier ({settings.Names.FirstOrDefault()} from {settings.MinValues.FirstOrDefault().ToString(CultureInfo.InvariantCulture)})"
            : $"; {r.Tier} starts at {settings.MinValues[i].ToString(CultureInfo.InvariantCulture)}");
        return new ContactTier { Tier = r.Tier ?? "", Value = (double)r.Value, Since = Timestamp.FromDateTime(r.Since), Why = why };
    }

    public async Task<TierSettings> GetAsync(TenantTransaction scope, CancellationToken ct)
    {
        var settings = await LoadAsync(scope, ct);
        if (settings is null) return new TierSettings { WindowDays = DefaultWindowDays };
        var result = new TierSettings
        {
            Measure = settings.Measure == "spend" ? TierMeasure.Spend : TierMeasure.OrderCount,
            WindowDays = settings.WindowDays,
        };
        result.Tiers.AddRange(settings.Names.Zip(settings.MinValues, (n, m) => new TierLevel { Name = n, MinValue = (double)m }));
        return result;
    }

    /// <summary>Every violation, named by its path in the request (<c>settings.tiers[2].min_value</c>).</summary>
    public static void Validate(TierSettings? settings)
    {
        var v = new Validation();
        if (settings is null)
        {
            v.Add("settings", "is required").ThrowIfInvalid();
            return;
        }
        if (settings.Measure == TierMeasure.Unspecified) v.Add("settings.measure", "is required: SPEND or ORDER_COUNT");
        if (settings.WindowDays is < 0 or > 3650) v.Add("settings.window_days", "must be 1 to 3650 days (0 = the default, 365)");
        if (settings.Tiers.Count > MaxTiers) v.Add("settings.tiers", $"must have at most {MaxTiers} tiers");
        var names = new Dictionary<string, int>(StringComparer.OrdinalIgnoreCase);
        for (var i = 0; i < settings.Tiers.Count; i++)
        {
            var tier = settings.Tiers[i];
            var path = $"settings.tiers[{i}]";
            if (tier.Name.Trim().Length == 0 || tier.Name.Length > 64) v.Add(path + ".name", "is required (1 to 64 characters)");
            else if (names.TryGetValue(tier.Name, out var first)) v.Add(path + ".name", $"'{tier.Name}' is already the name of settings.tiers[{first}]");
            else names[tier.Name] = i;
            if (!double.IsFinite(tier.MinValue) || tier.MinValue < 0 || tier.MinValue > 1e15)
                v.Add(path + ".min_value", "must be 0 or more");
            else if (i > 0 && tier.MinValue <= settings.Tiers[i - 1].MinValue)
                v.Add(path + ".min_value", $"must be greater than settings.tiers[{i - 1}].min_value ({settings.Tiers[i - 1].MinValue.ToString(CultureInfo.InvariantCulture)}): tiers ascend");
            else if (settings.Measure == TierMeasure.OrderCount && tier.MinValue != Math.Floor(tier.MinValue))
                v.Add(path + ".min_value", "must be a whole number of orders");
        }
        v.ThrowIfInvalid();
    }

    /// <summary>Replaces the tenant's tiers (validated by <see cref="Validate"/>) and marks every contact for re-evaluation.</summary>
    public async Task<TierSettings> SetAsync(TenantTransaction scope, TierSettings settings, CancellationToken ct)
    {
        await scope.Connection.ExecuteAsync(new CommandDefinition("""
            INSERT INTO tier_settings (tenant_id, measure, window_days, names, min_values, updated_at, checked_at)
            VALUES (@tenant, @measure, @windowDays, @names, @mins, @now, @now)
            ON CONFLICT (tenant_id) DO UPDATE SET measure = excluded.measure, window_days = excluded.window_days,
                names = excluded.names, min_values = excluded.min_values, updated_at = excluded.updated_at, checked_at = excluded.checked_at
            """, new
        {
            tenant = scope.Tenant,
            measure = settings.Measure == TierMeasure.Spend ? "spend" : "order_count",
            windowDays = settings.WindowDays == 0 ? DefaultWindowDays : settings.WindowDays,
            names = settings.Tiers.Select(t => t.Name).ToArray(),
            mins = settings.Tiers.Select(t => (decimal)t.MinValue).ToArray(),
            now = time.GetUtcNow().ToUniversalTime(),
        }, scope.Transaction, cancellationToken: ct));
        await TenantContacts.MarkAllDirtyAsync(scope, ct);
        return await GetAsync(scope, ct);
    }
}

/// <summary>
/// Marks the contacts whose completed orders left the tenant's tier window since the last look
/// (<c>checked_at - window</c> to <c>now - window</c>), so the refresh re-evaluates exactly them.
/// </summary>
public sealed class TierWindowMarking(TenantDb db, TimeProvider time, IConfiguration configuration, ILogger<TierWindowMarking> logger)
    : ClockDrivenMarking(db, time, IntervalSetting(configuration, "TierInterval"), logger)
{
    protected override string TenantsSql => "SELECT tenant_id FROM tier_settings";

    // The settings are read from the statement's snapshot, before its own UPDATE: replicas running at once mark
    // the same contacts twice at worst, and leave no gap between one look and the next.
    protected override string MarkSql => """
        WITH s AS (
            SELECT make_interval(days => window_days) AS span, checked_at FROM tier_settings WHERE tenant_id = @tenant
        ), checked AS (
            UPDATE tier_settings SET checked_at = @now WHERE tenant_id = @tenant
        )
        INSERT INTO dirty_contacts (tenant_id, contact_id)
        SELECT DISTINCT @tenant, o.contact_id FROM orders o, s
        WHERE o.tenant_id = @tenant AND o.status = 'completed'
          AND o.occurred_at > s.checked_at - s.span AND o.occurred_at <= @now - s.span
        ON CONFLICT (tenant_id, contact_id) DO UPDATE SET marked_at = now()
        """;
}

public static class TiersRegistration
{
    public static IServiceCollection AddTiers(this IServiceCollection services, IConfiguration configuration)
    {
        // Segmentation:TierInterval (default 1 h): how often orders leaving the window are looked for.
        return services.AddRefresher<TierEngine, TierWindowMarking>();
    }
}
