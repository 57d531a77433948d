using System.Text.Json;
using Crm.BuildingBlocks.Data;
using Crm.BuildingBlocks.Errors;
using Crm.Campaigns.V1;
using Dapper;
using Google.Protobuf.WellKnownTypes;

namespace Crm.Campaigns.Features.Campaigns;

/// <summary>
/// Campaign definitions: validated as a whole on every write (INVALID_ARGUMENT naming each bad field; the
/// templates named must exist and be of the channel they are used for), stored in one row plus its
/// variants. A campaign that has started keeps its audience, channels and variants.
/// </summary>
public sealed class CampaignEngine(TenantDb db, TimeProvider time)
{
    public const int MaxNameLength = 200;
    public const int MaxSegments = 20;
    public const int MaxVariants = 10;
    public static readonly string[] Channels = ["email", "sms", "push", "kakao"];
    private static readonly string[] Frozen = ["audience", "channels", "variants", "template_id", "fallback_templates", "holdout_share", "purpose"];

    /// <summary>A campaign's row (a class: Dapper fills array columns through setters, not a constructor).</summary>
    public sealed class CampaignRow
    {
        public Guid CampaignId { get; init; }
        public string Name { get; init; } = "";
        public string Status { get; init; } = "";
        public Guid[] SegmentIds { get; init; } = [];
        public Guid[] ExclusionSegmentIds { get; init; } = [];
        public string[] Channels { get; init; } = [];
        public string FallbackTemplates { get; init; } = "";
        public string Purpose { get; init; } = "";
        public string? Category { get; init; }
        public Guid? TemplateId { get; init; }
        public string Data { get; init; } = "";
        public DateTime? ExpiresAt { get; init; }
        public string ScheduleKind { get; init; } = "";
        public DateTime? SendAt { get; init; }
        public string? LocalDate { get; init; }
        public string? LocalTime { get; init; }
        public string PastZonePolicy { get; init; } = "";
        public string? Cron { get; init; }
        public string? TimeZone { get; init; }
        public DateTime? ScheduleEndsAt { get; init; }
        public double HoldoutShare { get; init; }
        public string? ConversionKind { get; init; }
        public string? ConversionEvent { get; init; }
        public int ConversionWindowDays { get; init; }
        public Guid? LastRunId { get; init; }
        public DateTime CreatedAt { get; init; }
        public DateTime UpdatedAt { get; init; }

        public const string Columns = """
            campaign_id, name, status, segment_ids, exclusion_segment_ids, channels, fallback_templates::text AS fallback_templates,
            purpose, category, template_id, data::text AS data, expires_at, schedule_kind, send_at, local_date::text AS local_date,
            to_char(local_time, 'HH24:MI') AS local_time,
            past_zone_policy, cron, time_zone, schedule_ends_at, holdout_share, conversion_kind, conversion_event,
            conversion_window_days, last_run_id, created_at, updated_at
            """;

        public IReadOnlyDictionary<string, string> DataMap => JsonSerializer.Deserialize<Dictionary<string, string>>(Data) ?? [];
    }

    public sealed record VariantRow(Guid CampaignId, string VariantId, string Name, int Weight, Guid TemplateId);

    // ---- calls --------------------------------------------------------------------------------------------

    public async Task<Campaign> CreateAsync(string tenant, Campaign input, CancellationToken ct)
    {
        var id = Guid.NewGuid();
        var now = time.GetUtcNow().UtcDateTime;
        await using var scope = await db.BeginAsync(tenant, ct);
        await ValidateAsync(scope, tenant, input, ct);
        await scope.Connection.ExecuteAsync(new CommandDefinition(
            "INSERT INTO campaigns (tenant_id, campaign_id, name, channels, purpose, created_at, updated_at) VALUES (@tenant, @id, '', '{}', 'marketing', @now, @now)",
            new { tenant, id, now }, scope.Transaction, cancellationToken: ct));
        await WriteAsync(scope, tenant, id, input, ct);
        var saved = await GetAsync(scope, tenant, id, ct);
        await scope.CommitAsync(ct);
        return saved;
    }

    public async Task<Campaign> UpdateAsync(string tenant, Campaign input, IReadOnlyList<string> mask, CancellationToken ct)
    {
        var id = ParseId(input.CampaignId, "campaign.campaign_id");
        await using var scope = await db.BeginAsync(tenant, ct);
        var current = await GetAsync(scope, tenant, id, ct, forUpdate: true);
        var merged = current.Clone();
        var paths = mask.Count == 0 ? Fields : mask;
        foreach (var path in paths) CopyField(path, input, merged);
        if (current.Status != CampaignStatus.Draft && paths.Any(p => Frozen.Contains(p.Split('.')[0]) && !SameField(p, current, merged)))
            throw new FailedPreconditionException($"Campaign {id} has started: its {string.Join(", ", Frozen)} no longer change; create a new campaign.");
        await ValidateAsync(scope, tenant, merged, ct);
        await WriteAsync(scope, tenant, id, merged, ct);
        var saved = await GetAsync(scope, tenant, id, ct);
        await scope.CommitAsync(ct);
        return saved;
    }

    public async Task<Campaign> GetAsync(string tenant, string campaignId, CancellationToken ct)
    {
        var id = ParseId(campaignId, "campaign_id");
        await using var scope = await db.BeginAsync(tenant, ct);
        return await GetAsync(scope, tenant, id, ct);
    }

    public static async Task<Campaign> GetAsync(TenantTransaction scope, string tenant, Guid id, CancellationToken ct, bool forUpdate = false)
    {
        var row = await GetRowAsync(scope, tenant, id, ct, forUpdate) ?? throw new NotFoundException($"Campaign {id} not found.");
        var variants = await VariantsAsync(scope, tenant, [id], ct);
        return ToProto(row, variants.GetValueOrDefault(id) ?? []);
    }

    public static Task<CampaignRow?> GetRowAsync(TenantTransaction scope, string tenant, Guid id, CancellationToken ct, bool forUpdate = false) =>
        scope.Connection.QuerySingleOrDefaultAsync<CampaignRow?>(new CommandDefinition(
            $"SELECT {CampaignRow.Columns} FROM campaigns WHERE tenant_id = @tenant AND campaign_id = @id" + (forUpdate ? " FOR UPDATE" : ""),
            new { tenant, id }, scope.Transaction, cancellationToken: ct));

    public static async Task<Dictionary<Guid, List<VariantRow>>> VariantsAsync(TenantTransaction scope, string tenant, Guid[] ids, CancellationToken ct) =>
        (await scope.Connection.QueryAsync<VariantRow>(new CommandDefinition("""
            SELECT campaign_id, variant_id, name, weight, template_id FROM campaign_variants
            WHERE tenant_id = @tenant AND campaign_id = ANY(@ids) ORDER BY campaign_id, position
            """, new { tenant, ids }, scope.Transaction, cancellationToken: ct)))
        .GroupBy(v => v.CampaignId).ToDictionary(g => g.Key, g => g.ToList());

    public async Task<ListCampaignsResponse> ListAsync(string tenant, ListCampaignsRequest request, CancellationToken ct)
    {
        var size = Math.Min(PageToken.Size(request.PageSize), 500);
        var after = PageToken.Decode(request.PageToken) is { } a ? ParseId(a, "page_token") : (Guid?)null;
        var status = request.Status == CampaignStatus.Unspecified ? "" : StatusName(request.Status);
        await using var scope = await db.BeginAsync(tenant, ct);
        var rows = (await scope.Connection.QueryAsync<CampaignRow>(new CommandDefinition($"""
            SELECT {CampaignRow.Columns} FROM campaigns
            WHERE tenant_id = @tenant AND (@after::uuid IS NULL OR campaign_id > @after) AND (@status = '' OR status = @status)
            ORDER BY campaign_id LIMIT @limit
            """, new { tenant, after, status, limit = size + 1 }, scope.Transaction, cancellationToken: ct))).AsList();
        var page = rows.Take(size).ToList();
        var variants = await VariantsAsync(scope, tenant, page.Select(r => r.CampaignId).ToArray(), ct);
        var response = new ListCampaignsResponse();
        response.Campaigns.AddRange(page.Select(r => ToProto(r, variants.GetValueOrDefault(r.CampaignId) ?? [])));
        if (rows.Count > size) response.NextPageToken = PageToken.Encode(page[^1].CampaignId.ToString());
        return response;
    }

    /// <summary>A draft goes; a campaign that ran is archived (its runs and reports stay); one running must be cancelled first.</summary>
    public async Task DeleteAsync(string tenant, string campaignId, CancellationToken ct)
    {
        var id = ParseId(campaignId, "campaign_id");
        await using var scope = await db.BeginAsync(tenant, ct);
        var row = await GetRowAsync(scope, tenant, id, ct, forUpdate: true) ?? throw new NotFoundException($"Campaign {id} not found.");
        if (row.Status is "running" or "paused" or "scheduled")
            throw new FailedPreconditionException($"Campaign {id} is {row.Status}: cancel it first.");
        var sql = row.LastRunId is null
            ? "DELETE FROM campaigns WHERE tenant_id = @tenant AND campaign_id = @id"
            : "UPDATE campaigns SET status = 'archived', updated_at = @now WHERE tenant_id = @tenant AND campaign_id = @id";
        await scope.Connection.ExecuteAsync(new CommandDefinition(sql, new { tenant, id, now = time.GetUtcNow().UtcDateTime }, scope.Transaction, cancellationToken: ct));
        await scope.CommitAsync(ct);
    }

    // ---- validation and writing ---------------------------------------------------------------------------

    private static readonly string[] Fields =
        ["name", "audience", "channels", "purpose", "category", "template_id", "schedule", "variants", "holdout_share", "conversion_goal", "data", "fallback_templates", "expire_time"];

    private static void CopyField(string path, Campaign from, Campaign to)
    {
        switch (path.Split('.')[0])
        {
            case "name": to.Name = from.Name; break;
            case "audience": to.Audience = from.Audience?.Clone(); break;
            case "channels": to.Channels.Clear(); to.Channels.AddRange(from.Channels); break;
            case "purpose": to.Purpose = from.Purpose; break;
            case "category": to.Category = from.Category; break;
            case "template_id": to.TemplateId = from.TemplateId; break;
            case "schedule": to.Schedule = from.Schedule?.Clone(); break;
            case "variants": to.Variants.Clear(); to.Variants.AddRange(from.Variants); break;
            case "holdout_share": to.HoldoutShare = from.HoldoutShare; break;
            case "conversion_goal": to.ConversionGoal = from.ConversionGoal?.Clone(); break;
            case "data": to.Data.Clear(); to.Data.Add(from.Data); break;
            case "fallback_templates": to.FallbackTemplates.Clear(); to.FallbackTemplates.Add(from.FallbackTemplates); break;
            case "expire_time": to.ExpireTime = from.ExpireTime; break;
            default: throw new InvalidArgumentException("update_mask", $"'{path}' is not a field that can be updated ({string.Join(", ", Fields)})");
        }
    }

    private static bool SameField(string path, Campaign a, Campaign b) => path.Split('.')[0] switch
    {
        "audience" => Equals(a.Audience, b.Audience),
        "channels" => a.Channels.SequenceEqual(b.Channels),
        "variants" => a.Variants.SequenceEqual(b.Variants),
        "template_id" => a.TemplateId == b.TemplateId,
        "fallback_templates" => a.FallbackTemplates.Count == b.FallbackTemplates.Count && !a.FallbackTemplates.Except(b.FallbackTemplates).Any(),
        "holdout_share" => a.HoldoutShare.Equals(b.HoldoutShare),
        "purpose" => a.Purpose == b.Purpose,
        _ => true,
    };

    private static async Task ValidateAsync(TenantTransaction scope, string tenant, Campaign c, CancellationToken ct)
    {
        var v = new Validation();
        const string f = "campaign";
        if (c.Name.Trim().Length is 0 or > MaxNameLength) v.Add($"{f}.name", $"is required (1 to {MaxNameLength} characters)");
        var audience = c.Audience ?? new V1.Audience();
        if (audience.SegmentIds.Count is 0 or > MaxSegments) v.Add($"{f}.audience.segment_ids", $"name 1 to {MaxSegments} segments");
        CheckIds(v, $"{f}.audience.segment_ids", audience.SegmentIds);
        CheckIds(v, $"{f}.audience.exclusion_segment_ids", audience.ExclusionSegmentIds);
        if (audience.ExclusionSegmentIds.Count > MaxSegments) v.Add($"{f}.audience.exclusion_segment_ids", $"at most {MaxSegments} segments");
        if (audience.SegmentIds.Intersect(audience.ExclusionSegmentIds).Any()) v.Add($"{f}.audience.exclusion_segment_ids", "a segment cannot be both included and excluded");
        if (c.Channels.Count == 0) v.Add($"{f}.channels", "name at least one channel: the first, then fallbacks in order");
        for (var i = 0; i < c.Channels.Count; i++)
            if (!Channels.Contains(c.Channels[i])) v.Add($"{f}.channels[{i}]", "must be one of email, sms, push, kakao");
        if (c.Channels.Distinct().Count() != c.Channels.Count) v.Add($"{f}.channels", "a channel is listed twice");
        if (c.Purpose is not ("marketing" or "transactional")) v.Add($"{f}.purpose", "must be marketing or transactional");
        if (c.Category.Length > 100) v.Add($"{f}.category", "at most 100 characters");
        if (c.HoldoutShare is < 0 or > 0.5 || double.IsNaN(c.HoldoutShare)) v.Add($"{f}.holdout_share", "must be 0 to 0.5");
        if (c.Data.Count > 100 || c.Data.Any(d => d.Key.Length is 0 or > 100 || d.Value.Length > 10_000)) v.Add($"{f}.data", "at most 100 entries, keys 1 to 100 characters, values up to 10,000");
        var goal = c.ConversionGoal ?? new ConversionGoal();
        if (goal.Kind is not ("" or "order" or "event")) v.Add($"{f}.conversion_goal.kind", "must be order or event (or empty for none)");
        if (goal.Kind == "event" && goal.EventName.Trim().Length == 0) v.Add($"{f}.conversion_goal.event_name", "is required for an event goal");
        if (goal.WindowDays is < 0 or > 90) v.Add($"{f}.conversion_goal.window_days", "must be 1 to 90 (0 for the default of 7)");
        ValidateSchedule(v, c.Schedule ?? new V1.Schedule());

        // Templates: the first channel's (template_id or each variant's), then one per fallback channel.
        var first = c.Channels.FirstOrDefault() ?? "";
        var uses = new List<(string Field, string Id, string Channel)>();
        if (c.Variants.Count == 0)
        {
            if (c.TemplateId.Length == 0) v.Add($"{f}.template_id", "is required (or give variants)");
            else uses.Add(($"{f}.template_id", c.TemplateId, first));
        }
        if (c.Variants.Count > MaxVariants) v.Add($"{f}.variants", $"at most {MaxVariants}");
        for (var i = 0; i < c.Variants.Count; i++)
        {
            var variant = c.Variants[i];
            if (variant.VariantId.Length is 0 or > 20 || !variant.VariantId.All(ch => char.IsAsciiLetterOrDigit(ch) || ch is '-' or '_') || variant.VariantId == "holdout")
                v.Add($"{f}.variants[{i}].variant_id", "is required: 1 to 20 letters, digits, '-' or '_' (not \"holdout\")");
            if (variant.Weight is < 1 or > 1000) v.Add($"{f}.variants[{i}].weight", "must be 1 to 1000");
            uses.Add(($"{f}.variants[{i}].template_id", variant.TemplateId, first));
        }
        if (c.Variants.Select(x => x.VariantId).Distinct().Count() != c.Variants.Count) v.Add($"{f}.variants", "variant ids must be unique");
        foreach (var (channel, templateId) in c.FallbackTemplates)
        {
            if (!c.Channels.Skip(1).Contains(channel)) v.Add($"{f}.fallback_templates[{channel}]", "is not a fallback channel of the campaign");
            else uses.Add(($"{f}.fallback_templates[{channel}]", templateId, channel));
        }
        foreach (var channel in c.Channels.Skip(1).Where(ch => !c.FallbackTemplates.ContainsKey(ch)))
            v.Add($"{f}.fallback_templates", $"needs a template for the fallback channel {channel}");
        foreach (var (field, id, _) in uses)
            if (!Guid.TryParse(id, out _)) v.Add(field, "is not a UUID");
        v.ThrowIfInvalid();

        var ids = uses.Select(u => Guid.Parse(u.Id)).Distinct().ToArray();
        var channels = (await scope.Connection.QueryAsync<(Guid Id, string Channel)>(new CommandDefinition(
            "SELECT template_id, channel FROM templates WHERE tenant_id = @tenant AND template_id = ANY(@ids)",
            new { tenant, ids }, scope.Transaction, cancellationToken: ct))).ToDictionary(t => t.Id, t => t.Channel);
        foreach (var (field, id, channel) in uses)
        {
            if (!channels.TryGetValue(Guid.Parse(id), out var actual)) v.Add(field, $"template {id} does not exist");
            else if (actual != channel) v.Add(field, $"template {id} is a {actual} template; this channel is {channel}");
        }
        v.ThrowIfInvalid();
    }

    private static void ValidateSchedule(Validation v, V1.Schedule s)
    {
        const string f = "campaign.schedule";
        switch (s.Kind)
        {
            case ScheduleKind.Unspecified or ScheduleKind.Now:
                break;
            case ScheduleKind.At:
                if (s.SendTime is null) v.Add($"{f}.send_time", "is required for an AT schedule");
                break;
            case ScheduleKind.LocalTime:
                if (!DateOnly.TryParseExact(s.LocalDate, "yyyy-MM-dd", out _)) v.Add($"{f}.local_date", "is required: YYYY-MM-DD");
                if (!TimeOnly.TryParseExact(s.LocalTime, "HH:mm", out _)) v.Add($"{f}.local_time", "is required: HH:mm");
                break;
            case ScheduleKind.Recurring:
                if (s.Cron.Trim().Split(' ', StringSplitOptions.RemoveEmptyEntries).Length != 5) v.Add($"{f}.cron", "is required: five fields (minute hour day month weekday)");
                if (!TimeZoneInfo.TryFindSystemTimeZoneById(s.TimeZone, out _)) v.Add($"{f}.time_zone", "is required: an IANA time zone");
                break;
            default:
                v.Add($"{f}.kind", "is not a known schedule kind");
                break;
        }
    }

    private static void CheckIds(Validation v, string field, IEnumerable<string> ids)
    {
        var i = 0;
        foreach (var id in ids)
        {
            if (!Guid.TryParse(id, out _)) v.Add($"{field}[{i}]", "is not a UUID");
            i++;
        }
    }

    private async Task WriteAsync(TenantTransaction scope, string tenant, Guid id, Campaign c, CancellationToken ct)
    {
        var s = c.Schedule ?? new V1.Schedule();
        var goal = c.ConversionGoal ?? new ConversionGoal();
        var audience = c.Audience ?? new V1.Audience();
        await scope.Connection.ExecuteAsync(new CommandDefinition("""
            UPDATE campaigns SET name = @name, segment_ids = @segments, exclusion_segment_ids = @exclusions, channels = @channels,
                fallback_templates = @fallbacks::jsonb, purpose = @purpose, category = @category, template_id = @templateId,
                data = @data::jsonb, expires_at = @expiresAt, schedule_kind = @kind, send_at = @sendAt, local_date = @localDate,
                local_time = @localTime, past_zone_policy = @pastZone, cron = @cron, time_zone = @timeZone, schedule_ends_at = @endsAt,
                holdout_share = @holdout, conversion_kind = @goalKind, conversion_event = @goalEvent, conversion_window_days = @window,
                updated_at = @now
            WHERE tenant_id = @tenant AND campaign_id = @id;
            DELETE FROM campaign_variants WHERE tenant_id = @tenant AND campaign_id = @id;
            INSERT INTO campaign_variants (tenant_id, campaign_id, variant_id, name, weight, template_id, position)
            SELECT @tenant, @id, v, n, w, t, p FROM unnest(@variantIds, @variantNames, @weights, @variantTemplates) WITH ORDINALITY AS x(v, n, w, t, p);
            """, new
        {
            tenant, id, name = c.Name.Trim(),
            segments = audience.SegmentIds.Select(Guid.Parse).ToArray(),
            exclusions = audience.ExclusionSegmentIds.Select(Guid.Parse).ToArray(),
            channels = c.Channels.ToArray(),
            fallbacks = JsonSerializer.Serialize(c.FallbackTemplates.ToDictionary(k => k.Key, k => k.Value)),
            purpose = c.Purpose, category = c.Category.Length == 0 ? null : c.Category,
            templateId = c.TemplateId.Length == 0 ? (Guid?)null : Guid.Parse(c.TemplateId),
            data = JsonSerializer.Serialize(c.Data.ToDictionary(k => k.Key, k => k.Value)),
            expiresAt = c.ExpireTime?.ToDateTime(),
            kind = s.Kind switch { ScheduleKind.At => "at", ScheduleKind.LocalTime => "local_time", ScheduleKind.Recurring => "recurring", _ => "now" },
            sendAt = s.SendTime?.ToDateTime(),
            localDate = DateOnly.TryParseExact(s.LocalDate, "yyyy-MM-dd", out var d) ? d : (DateOnly?)null,
            localTime = TimeOnly.TryParseExact(s.LocalTime, "HH:mm", out var t) ? t : (TimeOnly?)null,
            pastZone = s.PastZonePolicy == PastZonePolicy.Skip ? "skip" : "send_now",
            cron = s.Cron.Length == 0 ? null : s.Cron.Trim(), timeZone = s.TimeZone.Length == 0 ? null : s.TimeZone,
            endsAt = s.EndTime?.ToDateTime(),
            holdout = c.HoldoutShare,
            goalKind = goal.Kind.Length == 0 ? null : goal.Kind, goalEvent = goal.EventName.Length == 0 ? null : goal.EventName,
            window = goal.WindowDays == 0 ? 7 : goal.WindowDays,
            variantIds = c.Variants.Select(x => x.VariantId).ToArray(),
            variantNames = c.Variants.Select(x => x.Name).ToArray(),
            weights = c.Variants.Select(x => x.Weight).ToArray(),
            variantTemplates = c.Variants.Select(x => Guid.Parse(x.TemplateId)).ToArray(),
            now = time.GetUtcNow().UtcDateTime,
        }, scope.Transaction, cancellationToken: ct));
    }

    public static Campaign ToProto(CampaignRow r, IReadOnlyList<VariantRow> variants)
    {
        var c = new Campaign
        {
            CampaignId = r.CampaignId.ToString(), Name = r.Name, Purpose = r.Purpose, Category = r.Category ?? "",
            TemplateId = r.TemplateId?.ToString() ?? "", HoldoutShare = r.HoldoutShare, Status = ParseStatus(r.Status),
            Audience = new V1.Audience(), LastRunId = r.LastRunId?.ToString() ?? "",
            CreateTime = Ts(r.CreatedAt), UpdateTime = Ts(r.UpdatedAt),
            Schedule = new V1.Schedule
            {
                Kind = r.ScheduleKind switch { "at" => ScheduleKind.At, "local_time" => ScheduleKind.LocalTime, "recurring" => ScheduleKind.Recurring, _ => ScheduleKind.Now },
                SendTime = r.SendAt is { } sa ? Ts(sa) : null,
                LocalDate = r.LocalDate ?? "",
                LocalTime = r.LocalTime ?? "",
                PastZonePolicy = r.PastZonePolicy == "skip" ? PastZonePolicy.Skip : PastZonePolicy.SendNow,
                Cron = r.Cron ?? "", TimeZone = r.TimeZone ?? "", EndTime = r.ScheduleEndsAt is { } e ? Ts(e) : null,
            },
            ConversionGoal = new ConversionGoal { Kind = r.ConversionKind ?? "", EventName = r.ConversionEvent ?? "", WindowDays = r.ConversionWindowDays },
            ExpireTime = r.ExpiresAt is { } x ? Ts(x) : null,
        };
        c.Audience.SegmentIds.AddRange(r.SegmentIds.Select(g => g.ToString()));
        c.Audience.ExclusionSegmentIds.AddRange(r.ExclusionSegmentIds.Select(g => g.ToString()));
        c.Channels.AddRange(r.Channels);
        c.Data.Add(r.DataMap.ToDictionary(k => k.Key, k => k.Value));
        c.FallbackTemplates.Add(JsonSerializer.Deserialize<Dictionary<string, string>>(r.FallbackTemplates) ?? []);
        c.Variants.AddRange(variants.Select(v => new Variant { VariantId = v.VariantId, Name = v.Name, Weight = v.Weight, TemplateId = v.TemplateId.ToString() }));
        return c;
    }

    private static Timestamp Ts(DateTime d) => Timestamp.FromDateTime(DateTime.SpecifyKind(d, DateTimeKind.Utc));

    public static CampaignStatus ParseStatus(string s) => s switch
    {
        "draft" => CampaignStatus.Draft, "scheduled" => CampaignStatus.Scheduled, "running" => CampaignStatus.Running,
        "paused" => CampaignStatus.Paused, "completed" => CampaignStatus.Completed, "cancelled" => CampaignStatus.Cancelled,
        "archived" => CampaignStatus.Archived, _ => CampaignStatus.Unspecified,
    };

    private static string StatusName(CampaignStatus s) => s switch
    {
        CampaignStatus.Draft => "draft", CampaignStatus.Scheduled => "scheduled", CampaignStatus.Running => "running",
        CampaignStatus.Paused => "paused", CampaignStatus.Completed => "completed", CampaignStatus.Cancelled => "cancelled",
        CampaignStatus.Archived => "archived", _ => "",
    };

    public static Guid ParseId(string value, string field) =>
        Guid.TryParse(value, out var id) ? id : throw new InvalidArgumentException(field, "is not a UUID");
}

public static class CampaignsRegistration
{
    public static IServiceCollection AddCampaignDefinitions(this IServiceCollection services)
    {
        services.AddSingleton<CampaignEngine>();
        return services;
    }
}
