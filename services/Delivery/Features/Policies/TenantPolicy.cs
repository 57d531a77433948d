using Crm.BuildingBlocks.Data;
using System.Collections.Concurrent;
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

public sealed record DeliverySettings(
    bool QuietEnabled, string QuietStart, string QuietEnd, string TimeZone, int TransactionalHourlyLimit,
    string SenderName, string OptOutNumber, string UnsubscribeUrl, string UnsubscribeMailto)
{
    public static readonly DeliverySettings Default = new(false, "21:00", "08:00", "Asia/Seoul", 20, "", "", "", "");
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

public sealed class TenantPolicies(TenantDb db, SecretBox secrets, TimeProvider clock)
{
    private static readonly TimeSpan CacheFor = TimeSpan.FromSeconds(5);
    private readonly ConcurrentDictionary<string, (TenantPolicy Policy, DateTimeOffset Until)> _cache = new();

    public async Task<TenantPolicy> GetAsync(string tenant, CancellationToken ct)
    {
        if (_cache.TryGetValue(tenant, out var hit) && hit.Until > clock.GetUtcNow()) return hit.Policy;
        await using var scope = await db.BeginAsync(tenant, ct);
        var conn = scope.Connection;
        var settings = await conn.QuerySingleOrDefaultAsync<DeliverySettings>("""
            SELECT quiet_enabled AS QuietEnabled, quiet_start AS QuietStart, quiet_end AS QuietEnd, time_zone AS TimeZone,
                   transactional_hourly_limit AS TransactionalHourlyLimit, sender_name AS SenderName, opt_out_number AS OptOutNumber,
                   unsubscribe_url AS UnsubscribeUrl, unsubscribe_mailto AS UnsubscribeMailto
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
        _cache[tenant] = (policy, clock.GetUtcNow() + CacheFor);
        return policy;
    }

    public void Invalidate(string tenant) => _cache.TryRemove(tenant, out _);

    public ProviderAccountConfig Config(string tenant, ProviderAccountRow account) => new(
        account.AccountId,
        account.Kind,
        JsonSerializer.Deserialize<Dictionary<string, string>>(account.Settings) ?? [],
        account.Secret is null ? null : secrets.Open(account.Secret, $"{tenant}/{account.AccountId}"));
}
