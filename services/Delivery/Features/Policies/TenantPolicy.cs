using Crm.BuildingBlocks.Data;
using Microsoft.Extensions.Caching.Memory;
using System.Text.Json;
using Crm.Delivery.Channels;
using Crm.Delivery.Security;
using Dapper;
using Npgsql;

namespace Crm.Delivery.Features.Policies;

public sealed record CapRule(string RuleId, string Scope, string ScopeValue, int Limit, TimeSpan Window)
{
    public const string TransactionalSafetyId = "transactional-hourly";

    /// <summary>Does this rule count (and limit) a message of that channel, purpose and category?</summary>
    public bool Applies(string channel, string purpose, string? category) => Scope switch
    {
        "transactional" => purpose == "transactional",
        "all_marketing" => purpose == "marketing",
        "channel" => purpose == "marketing" && ScopeValue == channel,
        "category" => purpose == "marketing" && ScopeValue == category,
        _ => false,
    };
}

/// <param name="Jurisdiction">ISO 3166-1 alpha-2 country whose messaging law the workspace's marketing follows.</param>
public sealed record DeliverySettings(
    bool QuietEnabled, string QuietStart, string QuietEnd, string TimeZone, int TransactionalHourlyLimit,
    string SenderName, string OptOutNumber, string UnsubscribeUrl, string UnsubscribeMailto, string Jurisdiction,
    bool TrackingEnabled = true, string PostalAddress = "")
{
    public const string Korea = "KR";

    public static readonly DeliverySettings Default = new(false, "21:00", "08:00", "Asia/Seoul", 20, "", "", "", "", Korea);

    /// <summary>
    /// Korea's advertising rules (정보통신망법 §50): "(광고)", the sender and a free opt-out number on marketing SMS,
    /// and separate night-time consent for advertising between 21:00 and 08:00.
    /// </summary>
    public bool KoreanAdvertisingRules => Jurisdiction == Korea;
}

public sealed record ProviderAccountRow(string AccountId, string Kind, string Channel, bool IsDefault, double MessagesPerSecond, string Settings, byte[]? Secret);

/// <summary>Everything the pipeline needs to know about a tenant, read once and cached briefly.</summary>
public sealed record TenantPolicy(string TenantId, DeliverySettings Settings, IReadOnlyList<CapRule> Rules, IReadOnlyList<ProviderAccountRow> Accounts)
{
    /// <summary>The rules a message counts against: marketing rules for marketing, the safety cap for transactional.</summary>
    public IReadOnlyList<CapRule> RulesFor(string channel, string purpose, string? category)
    {
        var rules = Rules.Where(r => r.Applies(channel, purpose, category)).ToList();
        if (purpose == "transactional") rules.Add(TransactionalSafetyRule);
        return rules;
    }

    /// <summary>The safety cap of transactional messages per contact (against runaway loops).</summary>
    public CapRule TransactionalSafetyRule =>
        new(CapRule.TransactionalSafetyId, "transactional", "", Settings.TransactionalHourlyLimit, TimeSpan.FromHours(1));

    public ProviderAccountRow? Account(string channel, string? accountId) =>
        accountId is { Length: > 0 }
            ? Accounts.FirstOrDefault(a => a.AccountId == accountId && a.Channel == channel)
            : Accounts.Where(a => a.Channel == channel).OrderByDescending(a => a.IsDefault).FirstOrDefault();
}

/// <summary>
/// Tenants' policies, read once and kept briefly, in a cache bounded by <see cref="DeliveryOptions.PolicyCacheSize"/>
/// entries (a flood of distinct tenant ids, e.g. webhook paths, evicts rather than grows it).
/// </summary>
public sealed class TenantPolicies(TenantDb db, SecretBox secrets, TimeProvider clock, DeliveryOptions options) : IDisposable
{
    private static readonly TimeSpan CacheFor = TimeSpan.FromSeconds(5);

    /// <summary>
    /// How long "this tenant has no such provider account" is remembered for webhooks. Longer than policies: an
    /// unknown path is cheap to refuse again. An account created meanwhile invalidates it on this replica;
    /// other replicas learn of it within this time.
    /// </summary>
    private static readonly TimeSpan UnknownAccountFor = TimeSpan.FromSeconds(30);

    private readonly MemoryCache _cache = new(new MemoryCacheOptions { SizeLimit = options.PolicyCacheSize, Clock = new SystemClockOf(clock) });
    private long _loads;

    /// <summary>Policies read from the database so far (each a round trip): the cache's misses.</summary>
    public long Loads => Interlocked.Read(ref _loads);

    /// <summary>Entries held now (never more than the configured size).</summary>
    public int Count => _cache.Count;

    public async Task<TenantPolicy> GetAsync(string tenant, CancellationToken ct)
    {
        if (_cache.TryGetValue(tenant, out TenantPolicy? hit)) return hit!;
        Interlocked.Increment(ref _loads);
        await using var scope = await db.BeginAsync(tenant, ct);
        var conn = scope.Connection;
        var settings = await conn.QuerySingleOrDefaultAsync<DeliverySettings>("""
            SELECT quiet_enabled AS QuietEnabled, quiet_start AS QuietStart, quiet_end AS QuietEnd, time_zone AS TimeZone,
                   transactional_hourly_limit AS TransactionalHourlyLimit, sender_name AS SenderName, opt_out_number AS OptOutNumber,
                   unsubscribe_url AS UnsubscribeUrl, unsubscribe_mailto AS UnsubscribeMailto, jurisdiction AS Jurisdiction,
                   tracking_enabled AS TrackingEnabled, postal_address AS PostalAddress
            FROM delivery_settings WHERE tenant_id = @tenant
            """, new { tenant }) ?? DeliverySettings.Default;
        var rules = (await conn.QueryAsync<(string RuleId, string Scope, string ScopeValue, int Limit, long WindowSeconds)>(
            "SELECT rule_id, scope, scope_value, cap_limit, window_seconds FROM cap_rules WHERE tenant_id = @tenant ORDER BY rule_id", new { tenant }))
            .Select(r => new CapRule(r.RuleId, r.Scope, r.ScopeValue, r.Limit, TimeSpan.FromSeconds(r.WindowSeconds))).ToList();
        var accounts = (await conn.QueryAsync<ProviderAccountRow>("""
            SELECT account_id AS AccountId, kind AS Kind, channel AS Channel, is_default AS IsDefault,
                   messages_per_second AS MessagesPerSecond, settings::text AS Settings, secret AS Secret
            FROM provider_accounts WHERE tenant_id = @tenant ORDER BY account_id
            """, new { tenant })).ToList();
        var policy = new TenantPolicy(tenant, settings, rules, accounts);
        _cache.Set(tenant, policy, new MemoryCacheEntryOptions { Size = 1, AbsoluteExpirationRelativeToNow = CacheFor });
        return policy;
    }

    /// <summary>
    /// The account a provider's webhook names, or null. A tenant (valid-looking or not) without it is remembered,
    /// so a stream of callbacks to an unknown path costs one database round trip, not one each.
    /// </summary>
    public async Task<ProviderAccountRow?> WebhookAccountAsync(string tenant, string accountId, string kind, CancellationToken ct)
    {
        var unknown = $"unknown-account\n{tenant}\n{accountId}\n{kind}";
        if (_cache.TryGetValue(unknown, out _)) return null;
        var policy = await GetAsync(tenant, ct);
        var row = policy.Accounts.FirstOrDefault(a => a.AccountId == accountId && a.Kind == kind);
        if (row is null) _cache.Set(unknown, true, new MemoryCacheEntryOptions { Size = 1, AbsoluteExpirationRelativeToNow = UnknownAccountFor });
        return row;
    }

    /// <summary>After a change to the tenant's settings, caps or accounts on this replica.</summary>
    public void Invalidate(string tenant)
    {
        _cache.Remove(tenant);
        foreach (var key in _cache.Keys.OfType<string>().Where(k => k.StartsWith($"unknown-account\n{tenant}\n", StringComparison.Ordinal)).ToList())
            _cache.Remove(key);
    }

    public void Dispose() => _cache.Dispose();

    /// <summary>Expiry follows the service's clock (tests move it).</summary>
    private sealed class SystemClockOf(TimeProvider clock) : Microsoft.Extensions.Internal.ISystemClock
    {
        public DateTimeOffset UtcNow => clock.GetUtcNow();
    }

    public ProviderAccountConfig Config(string tenant, ProviderAccountRow account) => new(
        account.AccountId,
        account.Kind,
        JsonSerializer.Deserialize<Dictionary<string, string>>(account.Settings) ?? [],
        account.Secret is null ? null : secrets.Open(account.Secret, $"{tenant}/{account.AccountId}"));
}
