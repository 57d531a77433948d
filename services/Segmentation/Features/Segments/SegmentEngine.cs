using Crm.BuildingBlocks.Data;
using Crm.BuildingBlocks.Errors;
using Crm.Segmentation.Features.Membership;
using Crm.Segmentation.V1;
using Dapper;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Microsoft.Extensions.Options;
using Npgsql;

namespace Crm.Segmentation.Features.Segments;

public sealed class SegmentOptions
{
    public const string Section = "Segmentation";

    /// <summary>How often segments whose rules move with the clock are re-evaluated over the whole tenant.</summary>
    public TimeSpan TimeRelativeInterval { get; set; } = TimeSpan.FromMinutes(15);

    /// <summary>Contacts per SegmentMembershipChanged event (entered and left each); a larger change is several events.</summary>
    public int EventBatchSize { get; set; } = 10_000;

    /// <summary>How long one full evaluation of a segment may run (a large tenant's first evaluation).</summary>
    public TimeSpan EvaluationTimeout { get; set; } = TimeSpan.FromMinutes(10);
}

public static class SegmentsRegistration
{
    public static IServiceCollection AddSegments(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddOptions<SegmentOptions>().Bind(configuration.GetSection(SegmentOptions.Section))
            .Validate(o => o.TimeRelativeInterval > TimeSpan.Zero, "Segmentation:TimeRelativeInterval must be positive")
            .Validate(o => o.EventBatchSize is >= 1 and <= 100_000, "Segmentation:EventBatchSize must be 1 to 100000")
            .Validate(o => o.EvaluationTimeout > TimeSpan.Zero, "Segmentation:EvaluationTimeout must be positive")
            .ValidateOnStart();
        services.AddSingleton(sp => sp.GetRequiredService<IOptions<SegmentOptions>>().Value);
        services.AddSingleton<SegmentEngine>();
        services.AddSingleton<IContactRefresher>(sp => sp.GetRequiredService<SegmentEngine>());
        services.AddHostedService<TimeRelativeReevaluation>();
        return services;
    }
}

/// <summary>
/// Segments: rules stored per tenant, membership kept materialised in segment_members. A full evaluation (on
/// create, on a rule change, and on the schedule for rules that move with the clock) is one INSERT … SELECT and
/// DELETE diff per segment; a refresh of dirty contacts is the same statement narrowed to the batch. Every change
/// is published through the outbox as SegmentMembershipChanged in the transaction that made it.
///
/// Evaluations of one tenant are serialised by a transaction-scoped advisory lock, so a refresh and a full
/// evaluation never interleave their diffs, and each statement after the lock sees every projection write
/// committed before it.
/// </summary>
public sealed partial class SegmentEngine(TenantDb db, TimeProvider time, SegmentOptions options, ILogger<SegmentEngine> logger) : IContactRefresher
{
    public const int MaxNameLength = 200;
    public const int MaxDescriptionLength = 2000;
    public const int DefaultSampleSize = 20;
    public const int MaxSampleSize = 100;
    public const int DefaultExportPage = 1000;
    public const int MaxExportPage = 10_000;

    private static readonly JsonFormatter RuleJson = new(JsonFormatter.Settings.Default);

    public int Order => 100;

    // ---- calls --------------------------------------------------------------------------------------------

    public async Task<Segment> CreateAsync(string tenant, Segment input, CancellationToken ct)
    {
        var now = time.GetUtcNow();
        var compiled = Validate(input, now);
        await using var scope = await db.BeginAsync(tenant, ct);
        await LockAsync(scope, tenant, ct);
        var all = await LoadAllAsync(scope, tenant, ct);
        CheckReferences(compiled.Segments, all, self: null);
        var row = await scope.Connection.QuerySingleOrDefaultAsync<SegmentRow>(new CommandDefinition($"""
            INSERT INTO segments (tenant_id, segment_id, name, description, rule, depends_on, time_relative, created_at, updated_at)
            VALUES (@tenant, @id, @name, @description, @rule::jsonb, @dependsOn, @timeRelative, @now, @now)
            ON CONFLICT (tenant_id, lower(name)) DO NOTHING
            RETURNING {SegmentRow.Columns}
            """, new
        {
            tenant, id = Guid.NewGuid(), name = input.Name.Trim(), description = input.Description.Trim(), rule = RuleJson.Format(input.Rule),
            dependsOn = DependsOn(compiled), timeRelative = compiled.TimeRelative, now = now.UtcDateTime,
        }, scope.Transaction, cancellationToken: ct)) ?? throw new AlreadyExistsException($"A segment named '{input.Name.Trim()}' already exists.");
        var change = await EvaluateAsync(scope, tenant, row, now, null, ct);
        await RecordAsync(scope, tenant, [change], now, ct);
        var created = await GetRowAsync(scope, tenant, row.SegmentId, ct);
        await scope.CommitAsync(ct);
        return created!.ToProto();
    }

    /// <summary>Name, description and rule replace the stored ones; a rule change re-evaluates the segment and every segment that reads it.</summary>
    public async Task<Segment> UpdateAsync(string tenant, Segment input, CancellationToken ct)
    {
        var id = ParseId(input.SegmentId, "segment_id");
        var now = time.GetUtcNow();
        var compiled = Validate(input, now);
        await using var scope = await db.BeginAsync(tenant, ct);
        await LockAsync(scope, tenant, ct);
        var all = await LoadAllAsync(scope, tenant, ct);
        var existing = all.FirstOrDefault(s => s.SegmentId == id) ?? throw new NotFoundException($"Segment {id} not found.");
        CheckReferences(compiled.Segments, all, self: id);
        var rule = RuleJson.Format(input.Rule);
        var ruleChanged = !Rule.Parser.ParseJson(existing.Rule).Equals(input.Rule);
        SegmentRow row;
        try
        {
            row = await scope.Connection.QuerySingleAsync<SegmentRow>(new CommandDefinition($"""
                UPDATE segments SET name = @name, description = @description, rule = @rule::jsonb, depends_on = @dependsOn,
                    time_relative = @timeRelative, version = version + CASE WHEN @ruleChanged THEN 1 ELSE 0 END, updated_at = @now
                WHERE tenant_id = @tenant AND segment_id = @id
                RETURNING {SegmentRow.Columns}
                """, new
            {
                tenant, id, name = input.Name.Trim(), description = input.Description.Trim(), rule, dependsOn = DependsOn(compiled),
                timeRelative = compiled.TimeRelative, ruleChanged, now = now.UtcDateTime,
            }, scope.Transaction, cancellationToken: ct));
        }
        catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.UniqueViolation)
        {
            throw new AlreadyExistsException($"A segment named '{input.Name.Trim()}' already exists.");
        }
        if (ruleChanged)
        {
            all[all.FindIndex(s => s.SegmentId == id)] = row;
            var affected = Dependents(all, [id]);
            var changes = new List<Change>();
            foreach (var s in InDependencyOrder(all).Where(s => affected.Contains(s.SegmentId)))
                changes.Add(await EvaluateAsync(scope, tenant, s, now, null, ct));
            await RecordAsync(scope, tenant, changes, now, ct);
            row = (await GetRowAsync(scope, tenant, id, ct))!;
        }
        await scope.CommitAsync(ct);
        return row.ToProto();
    }

    public async Task<Segment> GetAsync(string tenant, string segmentId, CancellationToken ct)
    {
        var id = ParseId(segmentId, "segment_id");
        await using var scope = await db.BeginAsync(tenant, ct);
        return (await GetRowAsync(scope, tenant, id, ct) ?? throw new NotFoundException($"Segment {id} not found.")).ToProto();
    }

    /// <summary>By name (case-insensitive), in keyset pages.</summary>
    public async Task<ListSegmentsResponse> ListAsync(string tenant, ListSegmentsRequest request, CancellationToken ct)
    {
        var size = PageToken.Size(request.PageSize);
        var after = PageToken.Decode(request.PageToken);
        await using var scope = await db.BeginAsync(tenant, ct);
        var rows = (await scope.Connection.QueryAsync<SegmentRow>(new CommandDefinition($"""
            SELECT {SegmentRow.Columns} FROM segments
            WHERE tenant_id = @tenant AND (@after::text IS NULL OR lower(name) > @after)
            ORDER BY lower(name) LIMIT @limit
            """, new { tenant, after, limit = size + 1 }, scope.Transaction, cancellationToken: ct))).AsList();
        var response = new ListSegmentsResponse();
        response.Segments.AddRange(rows.Take(size).Select(r => r.ToProto()));
        if (rows.Count > size) response.NextPageToken = PageToken.Encode(rows[size - 1].Name.ToLowerInvariant());
        return response;
    }

    /// <summary>
    /// Refused while another segment reads this one. Its members leave: SegmentMembershipChanged lists them all
    /// as left, so that whoever follows the segment (a journey) sees its audience end rather than go silent.
    /// </summary>
    public async Task DeleteAsync(string tenant, string segmentId, CancellationToken ct)
    {
        var id = ParseId(segmentId, "segment_id");
        var now = time.GetUtcNow();
        await using var scope = await db.BeginAsync(tenant, ct);
        await LockAsync(scope, tenant, ct);
        if (await GetRowAsync(scope, tenant, id, ct) is null) throw new NotFoundException($"Segment {id} not found.");
        var readers = (await scope.Connection.QueryAsync<string>(new CommandDefinition(
            "SELECT name FROM segments WHERE tenant_id = @tenant AND @id = ANY(depends_on) ORDER BY lower(name)",
            new { tenant, id }, scope.Transaction, cancellationToken: ct))).AsList();
        if (readers.Count > 0)
            throw new FailedPreconditionException($"Segment {id} is used by {string.Join(", ", readers.Select(n => $"'{n}'"))}; remove it from their rules first.");
        var left = (await scope.Connection.QueryAsync<Guid>(new CommandDefinition("""
            DELETE FROM segment_members WHERE tenant_id = @tenant AND segment_id = @id RETURNING contact_id
            """, new { tenant, id }, scope.Transaction, cancellationToken: ct))).ToArray();
        Array.Sort(left);
        await scope.Connection.ExecuteAsync(new CommandDefinition(
            "DELETE FROM segments WHERE tenant_id = @tenant AND segment_id = @id", new { tenant, id }, scope.Transaction, cancellationToken: ct));
        await PublishAsync(scope, tenant, [new Change(id, [], left)], now);
        await scope.CommitAsync(ct);
    }

    public async Task<PreviewSegmentResponse> PreviewAsync(string tenant, PreviewSegmentRequest request, CancellationToken ct)
    {
        var v = new Validation();
        if (request.SampleSize is < 0 or > MaxSampleSize) v.Add("sample_size", $"must be 0 to {MaxSampleSize}");
        var compiled = CompileCollecting(request.Rule, time.GetUtcNow(), v);
        v.ThrowIfInvalid();
        var sample = request.SampleSize == 0 ? DefaultSampleSize : request.SampleSize;
        await using var scope = await db.BeginAsync(tenant, ct);
        CheckReferences(compiled!.Segments, await LoadAllAsync(scope, tenant, ct), self: null);
        var p = compiled.Parameters;
        p.Add("tenant", tenant);
        p.Add("sample", sample);
        var reach = Channels.Select(ch => RuleCompiler.Reachable(p, "r" + (int)ch + "_", ch)).ToArray();
        var rows = (await scope.Connection.QueryAsync(new CommandDefinition($"""
            WITH m AS MATERIALIZED (
                SELECT c.contact_id, c.external_id, c.has_email, c.has_phone, c.push_tokens, c.suppressed
                FROM contacts c WHERE c.tenant_id = @tenant AND ({compiled.Predicate})
            ), totals AS (
                SELECT count(*) AS n, {string.Join(", ", reach.Select((r, i) => $"count(*) FILTER (WHERE {r}) AS r{i}"))} FROM m c
            )
            SELECT t.*, s.contact_id, s.external_id
            FROM totals t LEFT JOIN LATERAL (SELECT contact_id, external_id FROM m ORDER BY contact_id LIMIT @sample) s ON true
            """, p, scope.Transaction, commandTimeout: (int)options.EvaluationTimeout.TotalSeconds, cancellationToken: ct)))
            .Cast<IDictionary<string, object?>>().AsList();
        var first = rows[0];
        var response = new PreviewSegmentResponse { Count = (long)first["n"]! };
        for (var i = 0; i < Channels.Length; i++) response.Reach.Add(new ChannelReach { Channel = Channels[i], Reachable = (long)first["r" + i]! });
        foreach (var r in rows.Where(r => r["contact_id"] is Guid))
            response.Sample.Add(new ContactRef { ContactId = r["contact_id"]!.ToString(), ExternalId = r["external_id"] as string ?? "" });
        return response;
    }

    private static readonly Channel[] Channels = [Channel.Email, Channel.Sms, Channel.Push, Channel.Kakao];

    /// <summary>
    /// The segment's members in contact-id order, in pages, all from ONE snapshot (a read-only REPEATABLE READ
    /// transaction): a contact entering or leaving meanwhile neither appears twice nor shifts a page. A
    /// page_token resumes after its contact, in a new snapshot.
    /// </summary>
    public async Task ExportAsync(string tenant, ExportSegmentMembersRequest request, Func<ExportSegmentMembersResponse, Task> write, CancellationToken ct)
    {
        var v = new Validation();
        if (!Guid.TryParse(request.SegmentId, out var id)) v.Add("segment_id", "must be a segment id");
        if (request.PageSize is < 0 or > MaxExportPage) v.Add("page_size", $"must be 0 to {MaxExportPage}");
        Guid? after = null;
        if (PageToken.Decode(request.PageToken) is { } token)
        {
            if (Guid.TryParse(token, out var last)) after = last;
            else v.Add("page_token", "is not a token returned by a previous call");
        }
        v.ThrowIfInvalid();
        var size = request.PageSize == 0 ? DefaultExportPage : request.PageSize;
        await using var scope = await db.BeginSnapshotAsync(tenant, ct);
        var total = await scope.Connection.QuerySingleOrDefaultAsync<long?>(new CommandDefinition("""
            SELECT (SELECT count(*) FROM segment_members sm JOIN contacts c ON c.tenant_id = sm.tenant_id AND c.contact_id = sm.contact_id
                    WHERE sm.tenant_id = @tenant AND sm.segment_id = @id)
            FROM segments WHERE tenant_id = @tenant AND segment_id = @id
            """, new { tenant, id }, scope.Transaction, cancellationToken: ct)) ?? throw new NotFoundException($"Segment {id} not found.");
        var snapshotAt = Timestamp.FromDateTimeOffset(time.GetUtcNow());
        var first = true;
        while (true)
        {
            var page = (await scope.Connection.QueryAsync<(Guid ContactId, string? ExternalId)>(new CommandDefinition("""
                SELECT sm.contact_id, c.external_id FROM segment_members sm
                JOIN contacts c ON c.tenant_id = sm.tenant_id AND c.contact_id = sm.contact_id
                WHERE sm.tenant_id = @tenant AND sm.segment_id = @id AND (@after::uuid IS NULL OR sm.contact_id > @after)
                ORDER BY sm.contact_id LIMIT @limit
                """, new { tenant, id, after, limit = size + 1 }, scope.Transaction, cancellationToken: ct))).AsList();
            var response = new ExportSegmentMembersResponse();
            if (first) { response.Total = total; response.SnapshotAt = snapshotAt; }
            response.Members.AddRange(page.Take(size).Select(m => new ContactRef { ContactId = m.ContactId.ToString(), ExternalId = m.ExternalId ?? "" }));
            var more = page.Count > size;
            if (more) response.NextPageToken = PageToken.Encode(page[size - 1].ContactId.ToString());
            if (response.Members.Count > 0 || first) await write(response);
            if (!more) return;
            after = page[size - 1].ContactId;
            first = false;
        }
    }

    /// <summary>The contact's segments with when they entered and why, and (where those capabilities keep them) RFM, lead score and tier.</summary>
    public async Task<ListContactSegmentsResponse> ListContactSegmentsAsync(string tenant, string contactId, CancellationToken ct)
    {
        var contact = ParseId(contactId, "contact_id");
        await using var scope = await db.BeginAsync(tenant, ct);
        var args = new { tenant, contact };
        using var grid = await scope.Connection.QueryMultipleAsync(new CommandDefinition("""
            SELECT EXISTS (SELECT 1 FROM contacts WHERE tenant_id = @tenant AND contact_id = @contact) AS known,
                   to_regclass('rfm_scores') IS NOT NULL AS rfm, to_regclass('lead_scores') IS NOT NULL AS leads,
                   to_regclass('contact_tiers') IS NOT NULL AS tiers;
            SELECT s.segment_id, s.name, s.rule::text AS rule, m.entered_at
            FROM segment_members m JOIN segments s ON s.tenant_id = m.tenant_id AND s.segment_id = m.segment_id
            WHERE m.tenant_id = @tenant AND m.contact_id = @contact ORDER BY lower(s.name);
            """, args, scope.Transaction, cancellationToken: ct));
        var (known, hasRfm, hasLeads, hasTiers) = await grid.ReadSingleAsync<(bool, bool, bool, bool)>();
        var memberships = (await grid.ReadAsync<(Guid SegmentId, string Name, string Rule, DateTime EnteredAt)>()).AsList();
        if (!known && memberships.Count == 0) throw new NotFoundException($"Contact {contact} not found.");
        var response = new ListContactSegmentsResponse();
        response.Segments.AddRange(memberships.Select(m => new ContactSegment
        {
            SegmentId = m.SegmentId.ToString(), Name = m.Name, EnteredAt = Timestamp.FromDateTime(m.EnteredAt),
            Why = RuleText.Describe(Rule.Parser.ParseJson(m.Rule)),
        }));
        // Those tables belong to the RFM, lead-scoring and tier capabilities; a deployment without them has no scores.
        if (hasRfm && await scope.Connection.QuerySingleOrDefaultAsync<RfmRow>(new CommandDefinition("""
                SELECT recency_days, frequency, monetary, r, f, m, segment, as_of FROM rfm_scores WHERE tenant_id = @tenant AND contact_id = @contact
                """, args, scope.Transaction, cancellationToken: ct)) is { } rfm)
            response.Rfm = new RfmScore
            {
                ContactId = contact.ToString(), RecencyDays = rfm.RecencyDays, Frequency = rfm.Frequency, Monetary = (double)rfm.Monetary,
                R = rfm.R, F = rfm.F, M = rfm.M, Segment = rfm.Segment ?? "", AsOf = Timestamp.FromDateTime(rfm.AsOf),
            };
        if (hasLeads && await scope.Connection.QuerySingleOrDefaultAsync<(double Score, bool Qualified, DateTime? QualifiedAt)?>(new CommandDefinition("""
                SELECT score, qualified, qualified_at FROM lead_scores WHERE tenant_id = @tenant AND contact_id = @contact
                """, args, scope.Transaction, cancellationToken: ct)) is { } lead)
            response.LeadScore = new LeadScore
            {
                ContactId = contact.ToString(), Score = lead.Score, Qualified = lead.Qualified,
                QualifiedAt = lead.QualifiedAt is { } q ? Timestamp.FromDateTime(q) : null,
            };
        if (hasTiers && await scope.Connection.QuerySingleOrDefaultAsync<(string? Tier, decimal Value, DateTime Since)?>(new CommandDefinition("""
                SELECT tier, value, since FROM contact_tiers WHERE tenant_id = @tenant AND contact_id = @contact
                """, args, scope.Transaction, cancellationToken: ct)) is { } tier)
            response.Tier = new ContactTier
            {
                Tier = tier.Tier ?? "", Value = (double)tier.Value, Since = Timestamp.FromDateTime(tier.Since),
                Why = $"{(string.IsNullOrEmpty(tier.Tier) ? "below the lowest tier" : "tier " + tier.Tier)} with {tier.Value:0.##} over the trailing window",
            };
        return response;
    }

    private sealed class RfmRow
    {
        public int RecencyDays { get; set; }
        public long Frequency { get; set; }
        public decimal Monetary { get; set; }
        public int R { get; set; }
        public int F { get; set; }
        public int M { get; set; }
        public string? Segment { get; set; }
        public DateTime AsOf { get; set; }
    }

    // ---- validation ---------------------------------------------------------------------------------------

    private static CompiledRule Validate(Segment input, DateTimeOffset now)
    {
        var v = new Validation();
        if (string.IsNullOrWhiteSpace(input.Name)) v.Add("name", "is required");
        else if (input.Name.Trim().Length > MaxNameLength) v.Add("name", $"must be at most {MaxNameLength} characters");
        if (input.Description.Length > MaxDescriptionLength) v.Add("description", $"must be at most {MaxDescriptionLength} characters");
        var compiled = CompileCollecting(input.Rule, now, v);
        v.ThrowIfInvalid();
        return compiled!;
    }

    private static CompiledRule? CompileCollecting(Rule? rule, DateTimeOffset now, Validation v)
    {
        try
        {
            return RuleCompiler.Compile(rule, now);
        }
        catch (InvalidArgumentException e)
        {
            foreach (var f in e.Violations) v.Add(f.Field, f.Description);
            return null;
        }
    }

    private static Guid ParseId(string value, string field) =>
        Guid.TryParse(value, out var id) ? id : throw new InvalidArgumentException(field, "must be an id (a UUID)");

    private static Guid[] DependsOn(CompiledRule compiled) => compiled.Segments.Select(s => s.SegmentId).Distinct().ToArray();

    /// <summary>Every segment a rule names must exist in the tenant (NOT_FOUND naming the reference), and reading it must not lead back to the segment itself.</summary>
    private static void CheckReferences(IReadOnlyList<SegmentReference> references, List<SegmentRow> all, Guid? self)
    {
        var byId = all.ToDictionary(s => s.SegmentId);
        if (references.FirstOrDefault(r => !byId.ContainsKey(r.SegmentId)) is { } missing)
            throw new NotFoundException($"{missing.Path}: segment {missing.SegmentId} not found.");
        var v = new Validation();
        foreach (var r in references)
        {
            if (self is { } me && CycleThrough(r.SegmentId, me, byId) is { } cycle)
                v.Add(r.Path, "would make a cycle: " + string.Join(" → ", cycle.Prepend(me).Select(id => byId.TryGetValue(id, out var s) ? $"'{s.Name}'" : id.ToString())));
        }
        v.ThrowIfInvalid();
    }

    /// <returns>The path from <paramref name="from"/> to <paramref name="target"/> through depends_on, or null.</returns>
    private static List<Guid>? CycleThrough(Guid from, Guid target, Dictionary<Guid, SegmentRow> byId)
    {
        var seen = new HashSet<Guid>();
        List<Guid>? Walk(Guid at)
        {
            if (at == target) return [at];
            if (!seen.Add(at) || !byId.TryGetValue(at, out var s)) return null;
            foreach (var next in s.DependsOn)
                if (Walk(next) is { } rest) { rest.Insert(0, at); return rest; }
            return null;
        }
        return Walk(from);
    }

    // ---- storage ------------------------------------------------------------------------------------------

    /// <summary>Serialises the evaluations of one tenant (refreshes, full evaluations, deletes) until the transaction ends.</summary>
    private static Task LockAsync(TenantTransaction scope, string tenant, CancellationToken ct) =>
        scope.Connection.ExecuteAsync(new CommandDefinition(
            "SELECT pg_advisory_xact_lock(1397050188, hashtext(@tenant))", new { tenant }, scope.Transaction, cancellationToken: ct));

    private static async Task<List<SegmentRow>> LoadAllAsync(TenantTransaction scope, string tenant, CancellationToken ct) =>
        (await scope.Connection.QueryAsync<SegmentRow>(new CommandDefinition(
            $"SELECT {SegmentRow.Columns} FROM segments WHERE tenant_id = @tenant ORDER BY segment_id",
            new { tenant }, scope.Transaction, cancellationToken: ct))).AsList();

    private static Task<SegmentRow?> GetRowAsync(TenantTransaction scope, string tenant, Guid id, CancellationToken ct) =>
        scope.Connection.QuerySingleOrDefaultAsync<SegmentRow>(new CommandDefinition(
            $"SELECT {SegmentRow.Columns} FROM segments WHERE tenant_id = @tenant AND segment_id = @id",
            new { tenant, id }, scope.Transaction, cancellationToken: ct));

    /// <summary>Segments a rule reads come before the rules that read them (their membership is brought up to date first).</summary>
    internal static List<SegmentRow> InDependencyOrder(List<SegmentRow> all)
    {
        var byId = all.ToDictionary(s => s.SegmentId);
        var ordered = new List<SegmentRow>(all.Count);
        var state = new Dictionary<Guid, bool>(); // false: visiting, true: done
        void Visit(SegmentRow s)
        {
            if (state.ContainsKey(s.SegmentId)) return; // done, or a cycle (refused on save) — never loop
            state[s.SegmentId] = false;
            foreach (var d in s.DependsOn)
                if (byId.TryGetValue(d, out var dep)) Visit(dep);
            state[s.SegmentId] = true;
            ordered.Add(s);
        }
        foreach (var s in all) Visit(s);
        return ordered;
    }

    /// <summary>The given segments and every segment that reads them, directly or through others.</summary>
    internal static HashSet<Guid> Dependents(List<SegmentRow> all, IEnumerable<Guid> roots)
    {
        var result = new HashSet<Guid>(roots);
        bool grew;
        do
        {
            grew = false;
            foreach (var s in all)
                if (!result.Contains(s.SegmentId) && s.DependsOn.Any(result.Contains)) grew = result.Add(s.SegmentId) | grew;
        } while (grew);
        return result;
    }
}

internal sealed class SegmentRow
{
    public const string Columns =
        "segment_id, name, description, rule::text AS rule, version, depends_on, time_relative, member_count, evaluated_at, created_at, updated_at";

    public Guid SegmentId { get; set; }
    public string Name { get; set; } = "";
    public string Description { get; set; } = "";
    public string Rule { get; set; } = "{}";
    public int Version { get; set; }
    public Guid[] DependsOn { get; set; } = [];
    public bool TimeRelative { get; set; }
    public long MemberCount { get; set; }
    public DateTime? EvaluatedAt { get; set; }
    public DateTime CreatedAt { get; set; }
    public DateTime UpdatedAt { get; set; }

    public Segment ToProto() => new()
    {
        SegmentId = SegmentId.ToString(),
        Name = Name,
        Description = Description,
        Rule = V1.Rule.Parser.ParseJson(Rule),
        MemberCount = MemberCount,
        EvaluatedAt = EvaluatedAt is { } at ? Timestamp.FromDateTime(at) : null,
        CreatedAt = Timestamp.FromDateTime(CreatedAt),
        UpdatedAt = Timestamp.FromDateTime(UpdatedAt),
        Version = Version,
    };
}
