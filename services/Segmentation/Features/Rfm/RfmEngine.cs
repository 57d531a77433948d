using Crm.BuildingBlocks.Data;
using Crm.Segmentation.Features.Membership;
using Dapper;

namespace Crm.Segmentation.Features.Rfm;

/// <summary>
/// RFM over the orders projection. For a tenant, an as_of time and a window of N days, over the completed
/// orders with as_of − N days ≤ occurred_at &lt; as_of, per contact:
/// recency_days = floor((as_of − last order) / 24 h) (elapsed time between two instants, so time zones and
/// daylight saving play no part), frequency = the number of those orders, monetary = their total.
/// The breakpoints are percentile_disc(0.2, 0.4, 0.6, 0.8) of each measure over the tenant's contacts with
/// such an order; F and M score 1 + the number of breakpoints strictly below the value, R scores 5 − the
/// number strictly below the days, so equal values always share a score. The named segment is the first
/// row of the tenant's table whose ranges hold (R, F, M), else "Others".
///
/// All of it is one SQL statement (<see cref="Scored"/>): the same CTEs feed the stored scores
/// (<see cref="RecomputeAsync"/>) and the on-the-fly report (<see cref="ReportAsync"/>).
/// </summary>
public sealed class RfmEngine(TenantDb db, TimeProvider time, RfmOptions options, ILogger<RfmEngine> logger)
{
    /// <summary>
    /// The tenant's table as (r, f, m) → segment for all 125 combinations, so that scoring joins once
    /// instead of searching the table per contact. Parameters: the table's columns as arrays.
    /// </summary>
    private const string Lookup = """
        named AS (
            SELECT * FROM unnest(@names::text[], @rMin::int[], @rMax::int[], @fMin::int[], @fMax::int[], @mMin::int[], @mMax::int[])
                WITH ORDINALITY AS t(name, r_min, r_max, f_min, f_max, m_min, m_max, position)
        ), lookup AS (
            SELECT r.r, f.f, m.m,
                   coalesce((SELECT n.name FROM named n
                             WHERE r.r BETWEEN n.r_min AND n.r_max AND f.f BETWEEN n.f_min AND n.f_max AND m.m BETWEEN n.m_min AND n.m_max
                             ORDER BY n.position LIMIT 1), 'Others') AS segment
            FROM generate_series(1, 5) AS r(r), generate_series(1, 5) AS f(f), generate_series(1, 5) AS m(m)
        )
        """;

    /// <summary>
    /// Every contact's measures, scores and segment (CTE <c>rfm</c>) and the breakpoints (CTE <c>breakpoints</c>).
    /// Parameters: @tenant, @asOf, @since (= as_of − window) and the table's (see <see cref="Lookup"/>).
    /// </summary>
    private const string Scored = """
        WITH per_contact AS (
            SELECT contact_id, count(*) AS frequency, sum(total) AS monetary, max(occurred_at) AS last_order_at
            FROM orders
            WHERE tenant_id = @tenant AND status = 'completed' AND occurred_at >= @since AND occurred_at < @asOf
            GROUP BY contact_id
        ), measured AS (
            SELECT contact_id, frequency, monetary, last_order_at,
                   floor(extract(epoch FROM @asOf - last_order_at) / 86400)::int AS recency_days
            FROM per_contact
        ), breakpoints AS (
            SELECT percentile_disc(ARRAY[0.2, 0.4, 0.6, 0.8]) WITHIN GROUP (ORDER BY recency_days) AS r,
                   percentile_disc(ARRAY[0.2, 0.4, 0.6, 0.8]) WITHIN GROUP (ORDER BY frequency) AS f,
                   percentile_disc(ARRAY[0.2, 0.4, 0.6, 0.8]) WITHIN GROUP (ORDER BY monetary) AS m
            FROM measured
        ), scored AS (
            SELECT s.contact_id, s.frequency, s.monetary, s.last_order_at, s.recency_days,
                   5 - ((s.recency_days > b.r[1])::int + (s.recency_days > b.r[2])::int
                      + (s.recency_days > b.r[3])::int + (s.recency_days > b.r[4])::int) AS r,
                   1 + (s.frequency > b.f[1])::int + (s.frequency > b.f[2])::int
                     + (s.frequency > b.f[3])::int + (s.frequency > b.f[4])::int AS f,
                   1 + (s.monetary > b.m[1])::int + (s.monetary > b.m[2])::int
                     + (s.monetary > b.m[3])::int + (s.monetary > b.m[4])::int AS m
            FROM measured s CROSS JOIN breakpoints b
        ),
        """ + Lookup + """
        , rfm AS (
            SELECT s.*, l.segment FROM scored s JOIN lookup l ON l.r = s.r AND l.f = s.f AND l.m = s.m
        )
        """;

    /// <summary>
    /// Replaces the tenant's stored scores with a fresh computation in one statement: every scored contact
    /// is upserted, contacts no longer scored are deleted, and those whose R, F, M or segment changed (or
    /// who appeared or went) are marked dirty, so segments with RFM conditions re-evaluate them.
    /// </summary>
    private const string Recompute = Scored + """
        , old AS (
            SELECT contact_id, r, f, m, segment FROM rfm_scores WHERE tenant_id = @tenant
        ), diff AS (
            SELECT coalesce(n.contact_id, o.contact_id) AS contact_id, n.contact_id IS NULL AS gone,
                   o.contact_id IS NULL OR n.contact_id IS NULL
                       OR (n.r, n.f, n.m, n.segment) IS DISTINCT FROM (o.r, o.f, o.m, o.segment) AS changed,
                   n.recency_days, n.frequency, n.monetary, n.r, n.f, n.m, n.segment, n.last_order_at
            FROM rfm n FULL JOIN old o ON o.contact_id = n.contact_id
        ), written AS (
            INSERT INTO rfm_scores (tenant_id, contact_id, recency_days, frequency, monetary, r, f, m, segment, as_of, last_order_at)
            SELECT @tenant, contact_id, recency_days, frequency, monetary, r, f, m, segment, @asOf, last_order_at
            FROM diff WHERE NOT gone
            ON CONFLICT (tenant_id, contact_id) DO UPDATE SET
                recency_days = excluded.recency_days, frequency = excluded.frequency, monetary = excluded.monetary,
                r = excluded.r, f = excluded.f, m = excluded.m, segment = excluded.segment, as_of = excluded.as_of,
                last_order_at = excluded.last_order_at
            RETURNING 1
        ), removed AS (
            DELETE FROM rfm_scores s USING diff d
            WHERE s.tenant_id = @tenant AND s.contact_id = d.contact_id AND d.gone
        ), dirtied AS (
            INSERT INTO dirty_contacts (tenant_id, contact_id)
            SELECT @tenant, contact_id FROM diff WHERE changed
            ON CONFLICT (tenant_id, contact_id) DO UPDATE SET marked_at = now()
            RETURNING 1
        )
        SELECT (SELECT count(*) FROM written) AS Scored, (SELECT count(*) FROM dirtied) AS Changed
        """;

    /// <summary>The window of the stored scores (Segmentation:RfmWindowDays), the report's default.</summary>
    public int DefaultWindowDays => options.RfmWindowDays;

    /// <summary>Recomputes and the table's edits wait for each other, per tenant (and across replicas).</summary>
    private const string LockTenant = "SELECT pg_advisory_xact_lock(hashtextextended('rfm:' || @tenant, 0))";

    /// <summary>
    /// Computes and stores every score of the tenant as of now (the window is Segmentation:RfmWindowDays).
    /// With <paramref name="onlyIfStale"/>, does nothing when another run brought the scores up to date
    /// while this one waited for the tenant's lock.
    /// </summary>
    public async Task<RfmRun?> RecomputeAsync(string tenant, bool onlyIfStale, CancellationToken ct)
    {
        await using var scope = await db.BeginAsync(tenant, ct);
        var (conn, tx) = scope;
        await conn.ExecuteAsync(new CommandDefinition(LockTenant, new { tenant }, tx, cancellationToken: ct));
        // After the lock: what a run that held it before us wrote is visible to this statement.
        var state = await conn.QuerySingleOrDefaultAsync<RfmState>(new CommandDefinition(
            "SELECT orders_changes AS OrdersChanges, computed_changes AS ComputedChanges, as_of AS AsOf FROM rfm_state WHERE tenant_id = @tenant",
            new { tenant }, tx, cancellationToken: ct));
        var asOf = time.GetUtcNow();
        if (onlyIfStale && state is not null && !state.IsStale(asOf, options.RfmMaxAge)) return null;

        var table = await RfmSegmentTable.LoadAsync(scope, ct);
        var parameters = Parameters(tenant, asOf, options.RfmWindowDays, table);
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        var (scored, changed) = await conn.QuerySingleAsync<(long Scored, long Changed)>(new CommandDefinition(
            Recompute, parameters, tx, commandTimeout: 0, cancellationToken: ct));
        await conn.ExecuteAsync(new CommandDefinition("""
            INSERT INTO rfm_state (tenant_id, orders_changes, computed_changes, as_of, window_days)
            VALUES (@tenant, @changes, @changes, @asOf, @windowDays)
            ON CONFLICT (tenant_id) DO UPDATE SET computed_changes = @changes, as_of = @asOf, window_days = @windowDays
            """, new { tenant, changes = state?.OrdersChanges ?? 0, asOf = asOf.UtcDateTime, windowDays = options.RfmWindowDays }, tx, cancellationToken: ct));
        await scope.CommitAsync(ct);
        var elapsed = System.Diagnostics.Stopwatch.GetElapsedTime(started);
        logger.LogInformation("RFM of {Tenant}: {Scored} contacts scored as of {AsOf:O} in {Elapsed} ms, {Changed} changed",
            tenant, scored, asOf, (long)elapsed.TotalMilliseconds, changed);
        return new RfmRun(asOf, scored, changed);
    }

    private static DynamicParameters Parameters(string tenant, DateTimeOffset asOf, int windowDays, RfmSegmentTable table)
    {
        var p = new DynamicParameters(table.AsParameters());
        p.Add("tenant", tenant);
        p.Add("asOf", asOf.UtcDateTime);
        p.Add("since", asOf.UtcDateTime.AddDays(-windowDays));
        return p;
    }

    /// <summary>The "who brings the money" view, computed for the given time and window (not from the stored scores).</summary>
    public async Task<RfmReportData> ReportAsync(string tenant, DateTimeOffset asOf, int windowDays, CancellationToken ct)
    {
        await using var scope = await db.BeginAsync(tenant, ct);
        var table = await RfmSegmentTable.LoadAsync(scope, ct);
        var rows = (await scope.Connection.QueryAsync<ReportRow>(new CommandDefinition(Scored + """
            , totals AS (
                SELECT count(*) AS customers, coalesce(sum(monetary), 0) AS revenue FROM rfm
            ), top AS (
                SELECT coalesce(sum(monetary), 0) AS revenue
                FROM (SELECT monetary FROM rfm ORDER BY monetary DESC LIMIT (SELECT ceil(customers / 5.0)::bigint FROM totals)) t
            ), per_segment AS (
                SELECT segment, count(*) AS contacts, sum(monetary) AS revenue, sum(frequency) AS orders,
                       percentile_cont(0.5) WITHIN GROUP (ORDER BY recency_days) AS median_days
                FROM rfm GROUP BY segment
            )
            SELECT t.customers AS Customers, t.revenue AS Revenue, top.revenue AS TopRevenue,
                   b.r AS RecencyBreakpoints, b.f AS FrequencyBreakpoints, b.m AS MonetaryBreakpoints,
                   p.segment AS Segment, p.contacts AS Contacts, p.revenue AS SegmentRevenue, p.orders AS Orders,
                   p.median_days AS MedianDays
            FROM totals t CROSS JOIN top CROSS JOIN breakpoints b LEFT JOIN per_segment p ON true
            """, Parameters(tenant, asOf, windowDays, table), scope.Transaction, commandTimeout: 0, cancellationToken: ct))).AsList();
        var first = rows[0];
        var bySegment = rows.Where(r => r.Segment is not null).ToDictionary(r => r.Segment!);
        var segments = table.Names.Select(name => bySegment.TryGetValue(name, out var r)
            ? new RfmSegmentFigures(name, r.Contacts, r.SegmentRevenue, r.Orders, r.MedianDays ?? 0)
            : new RfmSegmentFigures(name, 0, 0, 0, 0)).ToArray();
        return new RfmReportData(asOf, windowDays, first.Customers, first.Revenue, first.TopRevenue, segments,
            first.RecencyBreakpoints ?? [], first.FrequencyBreakpoints ?? [], first.MonetaryBreakpoints ?? []);
    }

    /// <summary>Stored scores in contact-id order, after <paramref name="after"/>, optionally of one segment or one contact.</summary>
    public async Task<IReadOnlyList<StoredRfmScore>> ListScoresAsync(string tenant, Guid? after, string? segment, Guid? contact, int limit, CancellationToken ct)
    {
        await using var scope = await db.BeginAsync(tenant, ct);
        return (await scope.Connection.QueryAsync<StoredRfmScore>(new CommandDefinition("""
            SELECT contact_id AS ContactId, recency_days AS RecencyDays, frequency AS Frequency, monetary AS Monetary,
                   r AS R, f AS F, m AS M, segment AS Segment, as_of AS AsOf
            FROM rfm_scores
            WHERE tenant_id = @tenant
              AND (@segment::text IS NULL OR segment = @segment)
              AND (@contact::uuid IS NULL OR contact_id = @contact)
              AND (@after::uuid IS NULL OR contact_id > @after)
            ORDER BY contact_id
            LIMIT @limit
            """, new { tenant, segment, contact, after, limit }, scope.Transaction, cancellationToken: ct))).AsList();
    }

    public async Task<RfmSegmentTable> GetTableAsync(string tenant, CancellationToken ct)
    {
        await using var scope = await db.BeginAsync(tenant, ct);
        return await RfmSegmentTable.LoadAsync(scope, ct);
    }

    /// <summary>
    /// Stores the tenant's table and relabels the stored scores by it in the same transaction (the scores
    /// themselves do not depend on the table), marking the contacts whose segment changed dirty.
    /// </summary>
    public async Task<long> SetTableAsync(string tenant, RfmSegmentTable table, CancellationToken ct)
    {
        await using var scope = await db.BeginAsync(tenant, ct);
        var (conn, tx) = scope;
        await conn.ExecuteAsync(new CommandDefinition(LockTenant, new { tenant }, tx, cancellationToken: ct));
        await table.SaveAsync(scope, ct);
        var p = new DynamicParameters(table.AsParameters());
        p.Add("tenant", tenant);
        var relabelled = await conn.ExecuteAsync(new CommandDefinition("WITH " + Lookup + """
            , relabelled AS (
                UPDATE rfm_scores s SET segment = l.segment
                FROM lookup l
                WHERE s.tenant_id = @tenant AND l.r = s.r AND l.f = s.f AND l.m = s.m AND s.segment <> l.segment
                RETURNING s.contact_id
            )
            INSERT INTO dirty_contacts (tenant_id, contact_id)
            SELECT @tenant, contact_id FROM relabelled
            ON CONFLICT (tenant_id, contact_id) DO UPDATE SET marked_at = now()
            """, p, tx, commandTimeout: 0, cancellationToken: ct));
        await scope.CommitAsync(ct);
        return relabelled;
    }

    private sealed record RfmState(long OrdersChanges, long ComputedChanges, DateTime? AsOf)
    {
        public bool IsStale(DateTimeOffset now, TimeSpan maxAge) =>
            OrdersChanges > ComputedChanges || AsOf is null || AsOf.Value <= now.UtcDateTime - maxAge || AsOf.Value > now.UtcDateTime;
    }

    private sealed class ReportRow
    {
        public long Customers { get; init; }
        public decimal Revenue { get; init; }
        public decimal TopRevenue { get; init; }
        public int[]? RecencyBreakpoints { get; init; }
        public long[]? FrequencyBreakpoints { get; init; }
        public decimal[]? MonetaryBreakpoints { get; init; }
        public string? Segment { get; init; }
        public long Contacts { get; init; }
        public decimal SegmentRevenue { get; init; }
        public long Orders { get; init; }
        public double? MedianDays { get; init; }
    }
}

public sealed record RfmRun(DateTimeOffset AsOf, long Scored, long Changed);

public sealed record RfmSegmentFigures(string Name, long Contacts, decimal Revenue, long Orders, double MedianDaysSinceLastOrder);

public sealed record RfmReportData(DateTimeOffset AsOf, int WindowDays, long Customers, decimal Revenue, decimal TopRevenue,
    IReadOnlyList<RfmSegmentFigures> Segments, int[] RecencyBreakpoints, long[] FrequencyBreakpoints, decimal[] MonetaryBreakpoints);

public sealed class StoredRfmScore
{
    public Guid ContactId { get; init; }
    public int RecencyDays { get; init; }
    public long Frequency { get; init; }
    public decimal Monetary { get; init; }
    public int R { get; init; }
    public int F { get; init; }
    public int M { get; init; }
    public string Segment { get; init; } = "";
    public DateTime AsOf { get; init; }
}

/// <summary>Segmentation:RfmInterval, RfmMaxAge and RfmWindowDays (the Segmentation section, beside the refresh's options).</summary>
public sealed class RfmOptions
{
    /// <summary>How often the schedule looks for tenants whose stored scores are stale.</summary>
    public TimeSpan RfmInterval { get; set; } = TimeSpan.FromHours(1);

    /// <summary>Stored scores older than this are recomputed even without new orders: recency moves with the clock.</summary>
    public TimeSpan RfmMaxAge { get; set; } = TimeSpan.FromDays(1);

    /// <summary>The window of the stored scores, and the report's default.</summary>
    public int RfmWindowDays { get; set; } = 365;
}

public static class RfmRegistration
{
    public static IServiceCollection AddRfm(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddOptions<RfmOptions>().Bind(configuration.GetSection("Segmentation"))
            .Validate(o => o.RfmInterval > TimeSpan.Zero, "Segmentation:RfmInterval must be positive")
            .Validate(o => o.RfmMaxAge > TimeSpan.Zero, "Segmentation:RfmMaxAge must be positive")
            .Validate(o => o.RfmWindowDays is >= 1 and <= RfmLimits.MaxWindowDays, $"Segmentation:RfmWindowDays must be 1 to {RfmLimits.MaxWindowDays}")
            .ValidateOnStart();
        services.AddSingleton(sp => sp.GetRequiredService<Microsoft.Extensions.Options.IOptions<RfmOptions>>().Value);
        services.AddSingleton<RfmEngine>();
        services.AddSingleton<RfmChangeDetector>();
        services.AddSingleton<IContactRefresher>(sp => sp.GetRequiredService<RfmChangeDetector>());
        services.AddSingleton<RfmSchedule>();
        services.AddHostedService(sp => sp.GetRequiredService<RfmSchedule>());
        return services;
    }
}

public static class RfmLimits
{
    /// <summary>Ten years: a report window, and the stored scores' (orders older than that are history).</summary>
    public const int MaxWindowDays = 3660;
}
