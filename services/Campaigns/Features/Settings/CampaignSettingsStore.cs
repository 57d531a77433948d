using Crm.BuildingBlocks.Data;
using Crm.BuildingBlocks.Errors;
using Crm.BuildingBlocks.Tenancy;
using Crm.Campaigns.V1;
using Dapper;
using Grpc.Core;

namespace Crm.Campaigns.Features.Settings;

/// <summary>The workspace's campaign defaults: the locale templates fall back to, the time zone of contacts without one.</summary>
public sealed class CampaignSettingsStore(TenantDb db, TimeProvider time)
{
    public static readonly CampaignSettings Defaults = new() { DefaultLocale = "en", DefaultTimeZone = "UTC" };

    public async Task<CampaignSettings> GetAsync(string tenant, CancellationToken ct)
    {
        await using var scope = await db.BeginAsync(tenant, ct);
        return await GetAsync(scope, tenant, ct);
    }

    public static async Task<CampaignSettings> GetAsync(TenantTransaction scope, string tenant, CancellationToken ct)
    {
        var row = await scope.Connection.QuerySingleOrDefaultAsync<(string Locale, string Zone)?>(new CommandDefinition(
            "SELECT default_locale, default_time_zone FROM campaign_settings WHERE tenant_id = @tenant",
            new { tenant }, scope.Transaction, cancellationToken: ct));
        return row is { } r ? new CampaignSettings { DefaultLocale = r.Locale, DefaultTimeZone = r.Zone } : Defaults.Clone();
    }

    public async Task<CampaignSettings> UpdateAsync(string tenant, CampaignSettings input, CancellationToken ct)
    {
        var v = new Validation();
        var locale = input.DefaultLocale.Length == 0 ? Defaults.DefaultLocale : input.DefaultLocale;
        var zone = input.DefaultTimeZone.Length == 0 ? Defaults.DefaultTimeZone : input.DefaultTimeZone;
        if (locale.Length > 35 || !locale.All(c => char.IsAsciiLetterOrDigit(c) || c == '-')) v.Add("settings.default_locale", "is not a BCP 47 tag such as \"ko-KR\"");
        if (!TimeZoneInfo.TryFindSystemTimeZoneById(zone, out _)) v.Add("settings.default_time_zone", $"'{zone}' is not an IANA time zone");
        v.ThrowIfInvalid();
        await using var scope = await db.BeginAsync(tenant, ct);
        await scope.Connection.ExecuteAsync(new CommandDefinition("""
            INSERT INTO campaign_settings (tenant_id, default_locale, default_time_zone, updated_at) VALUES (@tenant, @locale, @zone, @now)
            ON CONFLICT (tenant_id) DO UPDATE SET default_locale = excluded.default_locale, default_time_zone = excluded.default_time_zone, updated_at = excluded.updated_at
            """, new { tenant, locale, zone, now = time.GetUtcNow().UtcDateTime }, scope.Transaction, cancellationToken: ct));
        await scope.CommitAsync(ct);
        return new CampaignSettings { DefaultLocale = locale, DefaultTimeZone = zone };
    }
}

public static class SettingsRegistration
{
    public static IServiceCollection AddCampaignSettings(this IServiceCollection services)
    {
        services.AddSingleton<CampaignSettingsStore>();
        return services;
    }
}
