using System.Globalization;
using System.Text.Json;
using Crm.BuildingBlocks.Errors;
using Crm.BuildingBlocks.Tenancy;
using Crm.Delivery.V1;
using Dapper;
using Grpc.Core;

namespace Crm.Delivery.Features;

public sealed partial class DeliveryGrpcService
{
    private static readonly TimeSpan MinWindow = TimeSpan.FromMinutes(1);
    private static readonly TimeSpan MaxWindow = TimeSpan.FromDays(30);

    public override async Task<FrequencyCapRules> SetFrequencyCapRules(SetFrequencyCapRulesRequest request, ServerCallContext context)
    {
        var caller = context.Caller(Scope.DeliveryAdmin);
        var v = new Validation();
        for (var i = 0; i < request.Rules.Count; i++)
        {
            var r = request.Rules[i];
            if (r.RuleId.Length is 0 or > 64) v.Add($"rules[{i}].rule_id", "is required (1 to 64 characters)");
            if (r.Scope == CapScope.Unspecified) v.Add($"rules[{i}].scope", "is required");
            if (r.Scope is CapScope.Channel && _channels.Find(r.ScopeValue) is null) v.Add($"rules[{i}].scope_value", $"must be one of {_channels.Names} for a channel rule");
            if (r.Scope is CapScope.Category && r.ScopeValue.Length == 0) v.Add($"rules[{i}].scope_value", "names the campaign category");
            if (r.Limit < 1) v.Add($"rules[{i}].limit", "must be at least 1");
            var window = TimeSpan.FromSeconds(r.WindowSeconds);
            if (window < MinWindow || window > MaxWindow) v.Add($"rules[{i}].window_seconds", "must be between one minute and 30 days");
        }
        if (request.Rules.Select(r => r.RuleId).Distinct().Count() != request.Rules.Count) v.Add("rules", "rule ids must be unique");
        if (request.TransactionalHourlyLimit < 0) v.Add("transactional_hourly_limit", "must not be negative");
        v.ThrowIfInvalid();

        var tenant = caller.TenantId;
        await using var scope = await _db.BeginAsync(tenant, context.CancellationToken);
        var (conn, tx) = scope;
        await conn.ExecuteAsync("DELETE FROM cap_rules WHERE tenant_id = @tenant", new { tenant }, tx);
        foreach (var r in request.Rules)
            await conn.ExecuteAsync("""
                INSERT INTO cap_rules (tenant_id, rule_id, scope, scope_value, cap_limit, window_seconds)
                VALUES (@tenant, @RuleId, @scope, @ScopeValue, @Limit, @WindowSeconds)
                """, new { tenant, r.RuleId, scope = ScopeWord(r.Scope), r.ScopeValue, r.Limit, r.WindowSeconds }, tx);
        await EnsureSettingsAsync(conn, tx, tenant);
        await conn.ExecuteAsync("UPDATE delivery_settings SET transactional_hourly_limit = @limit WHERE tenant_id = @tenant",
            new { tenant, limit = request.TransactionalHourlyLimit == 0 ? Policies.DeliverySettings.Default.TransactionalHourlyLimit : request.TransactionalHourlyLimit }, tx);
        await tx.CommitAsync(context.CancellationToken);
        _policies.Invalidate(tenant);
        return await GetFrequencyCapRules(new GetFrequencyCapRulesRequest(), context);
    }

    public override async Task<FrequencyCapRules> GetFrequencyCapRules(GetFrequencyCapRulesRequest request, ServerCallContext context)
    {
        var caller = context.Caller(Scope.DeliveryRead);
        var policy = await _policies.GetAsync(caller.TenantId, context.CancellationToken);
        var result = new FrequencyCapRules { TransactionalHourlyLimit = policy.Settings.TransactionalHourlyLimit };
        result.Rules.AddRange(policy.Rules.Select(r => new FrequencyCapRule
        {
            RuleId = r.RuleId, Scope = ScopeOf(r.Scope), ScopeValue = r.ScopeValue, Limit = r.Limit, WindowSeconds = (long)r.Window.TotalSeconds,
        }));
        return result;
    }

    public override async Task<QuietHours> SetQuietHours(SetQuietHoursRequest request, ServerCallContext context)
    {
        var caller = context.Caller(Scope.DeliveryAdmin);
        var q = request.QuietHours ?? throw new InvalidArgumentException("quiet_hours", "is required");
        var v = new Validation();
        if (!TimeOnly.TryParseExact(q.Start, "HH:mm", CultureInfo.InvariantCulture, DateTimeStyles.None, out _)) v.Add("quiet_hours.start", "must be HH:mm, e.g. 21:00");
        if (!TimeOnly.TryParseExact(q.End, "HH:mm", CultureInfo.InvariantCulture, DateTimeStyles.None, out _)) v.Add("quiet_hours.end", "must be HH:mm, e.g. 08:00");
        if (q.TimeZone.Length > 0 && !TimeZoneInfo.TryFindSystemTimeZoneById(q.TimeZone, out _)) v.Add("quiet_hours.time_zone", $"'{q.TimeZone}' is not an IANA time zone");
        v.ThrowIfInvalid();
        await using var scope = await _db.BeginAsync(caller.TenantId, context.CancellationToken);
        var conn = scope.Connection;
        await EnsureSettingsAsync(conn, null, caller.TenantId);
        await conn.ExecuteAsync("""
            UPDATE delivery_settings SET quiet_enabled = @Enabled, quiet_start = @Start, quiet_end = @End,
                time_zone = coalesce(nullif(@TimeZone, ''), time_zone)
            WHERE tenant_id = @tenant
            """, new { tenant = caller.TenantId, q.Enabled, q.Start, q.End, q.TimeZone });
        await scope.CommitAsync(context.CancellationToken);
        _policies.Invalidate(caller.TenantId);
        return await GetQuietHours(new GetQuietHoursRequest(), context);
    }

    public override async Task<QuietHours> GetQuietHours(GetQuietHoursRequest request, ServerCallContext context)
    {
        var caller = context.Caller(Scope.DeliveryRead);
        var s = (await _policies.GetAsync(caller.TenantId, context.CancellationToken)).Settings;
        return new QuietHours { Enabled = s.QuietEnabled, Start = s.QuietStart, End = s.QuietEnd, TimeZone = s.TimeZone };
    }

    public override async Task<SenderProfile> SetSenderProfile(SetSenderProfileRequest request, ServerCallContext context)
    {
        var caller = context.Caller(Scope.DeliveryAdmin);
        var p = request.Profile ?? throw new InvalidArgumentException("profile", "is required");
        var v = new Validation();
        // Checked by the helper that writes the headers at send time (with a sample message id), so a
        // profile accepted here never fails a marketing email later.
        if (p.UnsubscribeUrl.Length > 0)
            CheckUnsubscribe(v, "profile.unsubscribe_url", () => Channels.AdvertisingForm.UnsubscribeHeaders(p.UnsubscribeUrl.Replace("{message_id}", Guid.Empty.ToString("N"), StringComparison.Ordinal), null));
        if (p.UnsubscribeMailto.Length > 0)
            CheckUnsubscribe(v, "profile.unsubscribe_mailto", () => Channels.AdvertisingForm.UnsubscribeHeaders(null, p.UnsubscribeMailto));
        if (p.TimeZone.Length > 0 && !TimeZoneInfo.TryFindSystemTimeZoneById(p.TimeZone, out _)) v.Add("profile.time_zone", $"'{p.TimeZone}' is not an IANA time zone");
        if (p.Jurisdiction.Length > 0 && !IsCountryCode(p.Jurisdiction)) v.Add("profile.jurisdiction", $"'{p.Jurisdiction}' is not an ISO 3166-1 alpha-2 country code (e.g. KR, US)");
        v.ThrowIfInvalid();
        await using var scope = await _db.BeginAsync(caller.TenantId, context.CancellationToken);
        var conn = scope.Connection;
        await EnsureSettingsAsync(conn, null, caller.TenantId);
        var (jurisdiction, tracking) = await conn.QuerySingleAsync<(string, bool)>("""
            UPDATE delivery_settings SET sender_name = @SenderName, opt_out_number = @OptOutNumber,
                unsubscribe_url = @UnsubscribeUrl, unsubscribe_mailto = @UnsubscribeMailto,
                time_zone = coalesce(nullif(@TimeZone, ''), time_zone),
                jurisdiction = coalesce(nullif(@jurisdiction, ''), jurisdiction),
                postal_address = @PostalAddress, tracking_enabled = coalesce(@tracking, tracking_enabled)
            WHERE tenant_id = @tenant
            RETURNING jurisdiction, tracking_enabled
            """, new { tenant = caller.TenantId, p.SenderName, p.OptOutNumber, p.UnsubscribeUrl, p.UnsubscribeMailto, p.TimeZone,
                jurisdiction = p.Jurisdiction.ToUpperInvariant(), p.PostalAddress, tracking = p.HasTracking ? p.Tracking : (bool?)null });
        await scope.CommitAsync(context.CancellationToken);
        _policies.Invalidate(caller.TenantId);
        var saved = p.Clone();
        saved.Jurisdiction = jurisdiction;
        saved.Tracking = tracking;
        return saved;
    }

    public override async Task<SenderProfile> GetSenderProfile(GetSenderProfileRequest request, ServerCallContext context)
    {
        var caller = context.Caller(Scope.DeliveryRead);
        var s = (await _policies.GetAsync(caller.TenantId, context.CancellationToken)).Settings;
        return new SenderProfile
        {
            SenderName = s.SenderName, OptOutNumber = s.OptOutNumber, UnsubscribeUrl = s.UnsubscribeUrl,
            UnsubscribeMailto = s.UnsubscribeMailto, TimeZone = s.TimeZone, Jurisdiction = s.Jurisdiction,
        };
    }

    private static bool IsCountryCode(string code) => code.Length == 2 && code.All(char.IsAsciiLetter);

    private static void CheckUnsubscribe(Validation v, string field, Action build)
    {
        try
        {
            build();
        }
        catch (ArgumentException e)
        {
            v.Add(field, $"{e.Message.Split(" (Parameter", 2)[0]} (RFC 8058 one-click unsubscribe needs an https URL or a mailto address)");
        }
    }

    public override async Task<ProviderAccount> UpsertProviderAccount(UpsertProviderAccountRequest request, ServerCallContext context)
    {
        var caller = context.Caller(Scope.DeliveryAdmin);
        var a = request.Account ?? throw new InvalidArgumentException("account", "is required");
        var v = new Validation();
        if (a.AccountId.Length is 0 or > 64) v.Add("account.account_id", "is required (1 to 64 characters)");
        if (a.Kind == ProviderKind.Unspecified) v.Add("account.kind", "is required");
        if (a.Kind == ProviderKind.Noop && !_options.AllowNoopProvider) v.Add("account.kind", "noop accounts are not allowed on this deployment");
        var channel = _channels.Find(a.Channel);
        if (channel is null) v.Add("account.channel", $"must be one of {_channels.Names}");
        var provider = _channels.Provider(a.Kind);
        if (a.Kind != ProviderKind.Noop && a.Kind != ProviderKind.Unspecified && provider is null) v.Add("account.kind", "is not a provider kind of this deployment");
        if (provider is { } p && channel is not null && p.Channel != channel)
            v.Add("account.channel", $"a {p.Provider.Kind} account sends {p.Channel.Name}");
        if (a.MessagesPerSecond is <= 0 or > 100_000) v.Add("account.messages_per_second", "must be more than 0 and at most 100000");
        var kind = provider?.Provider.Kind ?? Channels.NoopSender.Kind;
        // Settings are checked by the readers the senders use, so an account accepted here is one they can
        // send through. Without a new secret the stored one is kept: a placeholder stands in for it.
        var candidate = new Channels.ProviderAccountConfig(a.AccountId, kind, a.Settings.ToDictionary(), request.Secret.Length > 0 ? request.Secret : "(stored)");
        if (provider?.Provider.CheckSettings(candidate) is { } problem) v.Add("account.settings", problem);
        foreach (var (setting, host) in EndpointHosts(a))
            if (_guard.LiteralRefusal(host) is { } refused)
                v.Add($"account.settings.{setting}", $"{refused}: provider endpoints must be public internet addresses");
        v.ThrowIfInvalid();

        var tenant = caller.TenantId;
        var channelName = channel!.Name;
        await using var scope = await _db.BeginAsync(tenant, context.CancellationToken);
        var (conn, tx) = scope;
        if (a.IsDefault)
            await conn.ExecuteAsync("UPDATE provider_accounts SET is_default = false WHERE tenant_id = @tenant AND channel = @channelName", new { tenant, channelName }, tx);
        await conn.ExecuteAsync("""
            INSERT INTO provider_accounts (tenant_id, account_id, kind, channel, is_default, messages_per_second, settings, secret)
            VALUES (@tenant, @AccountId, @kind, @channelName, @IsDefault, @MessagesPerSecond, @settings::jsonb, @secret)
            ON CONFLICT (tenant_id, account_id) DO UPDATE SET kind = excluded.kind, channel = excluded.channel,
                is_default = excluded.is_default, messages_per_second = excluded.messages_per_second,
                settings = excluded.settings, secret = coalesce(excluded.secret, provider_accounts.secret)
            """, new
        {
            tenant, a.AccountId, kind, channelName, a.IsDefault, a.MessagesPerSecond,
            settings = JsonSerializer.Serialize(a.Settings.ToDictionary()),
            secret = request.Secret.Length > 0 ? _secrets.Seal(request.Secret, $"{tenant}/{a.AccountId}") : null,
        }, tx);
        await tx.CommitAsync(context.CancellationToken);
        _policies.Invalidate(tenant);
        return (await ListProviderAccounts(new ListProviderAccountsRequest(), context)).Accounts.Single(x => x.AccountId == a.AccountId);
    }

    public override async Task<ListProviderAccountsResponse> ListProviderAccounts(ListProviderAccountsRequest request, ServerCallContext context)
    {
        var caller = context.Caller(Scope.DeliveryRead);
        var policy = await _policies.GetAsync(caller.TenantId, context.CancellationToken);
        var response = new ListProviderAccountsResponse();
        foreach (var a in policy.Accounts)
        {
            var account = new ProviderAccount
            {
                AccountId = a.AccountId,
                Kind = _channels.Provider(a.Kind)?.Provider.Proto ?? ProviderKind.Noop,
                Channel = _channels.ProtoOf(a.Channel),
                IsDefault = a.IsDefault,
                MessagesPerSecond = a.MessagesPerSecond,
                HasSecret = a.Secret is not null, // never the secret itself
            };
            foreach (var (k, val) in JsonSerializer.Deserialize<Dictionary<string, string>>(a.Settings) ?? []) account.Settings[k] = val;
            response.Accounts.Add(account);
        }
        return response;
    }

    /// <summary>The hosts an account's settings make us connect to (checked again on every connection).</summary>
    private static IEnumerable<(string Setting, string Host)> EndpointHosts(ProviderAccount a)
    {
        if (a.Settings.TryGetValue("base_url", out var url) && Uri.TryCreate(url.Trim(), UriKind.Absolute, out var uri)) yield return ("base_url", uri.Host);
        if (a.Settings.TryGetValue("host", out var host) && host.Trim().Length > 0) yield return ("host", host.Trim());
    }

    private static Task EnsureSettingsAsync(Npgsql.NpgsqlConnection conn, Npgsql.NpgsqlTransaction? tx, string tenant) =>
        conn.ExecuteAsync("INSERT INTO delivery_settings (tenant_id) VALUES (@tenant) ON CONFLICT DO NOTHING", new { tenant }, tx);

    private static string ScopeWord(CapScope s) => s switch
    {
        CapScope.AllMarketing => "all_marketing",
        CapScope.Channel => "channel",
        CapScope.Category => "category",
        _ => throw new ArgumentOutOfRangeException(nameof(s)),
    };

    private static CapScope ScopeOf(string s) => s switch
    {
        "all_marketing" => CapScope.AllMarketing,
        "channel" => CapScope.Channel,
        "category" => CapScope.Category,
        _ => CapScope.Unspecified,
    };
}
