using Crm.BuildingBlocks.Data;
using Crm.Contracts.Segmentation;
using Crm.Segmentation.Features.Membership;
using Dapper;

namespace Crm.Segmentation.Features.Segments;

/// <summary>Who entered and who left one segment in one evaluation.</summary>
public sealed record Change(Guid SegmentId, Guid[] Entered, Guid[] Left);

// Keeping membership: the diff statement, the refresh of dirty contacts, and what is recorded and published.
public sealed partial class SegmentEngine
{
    // One statement per segment: the members the rule selects now, inserted if new, and the members it no
    // longer selects, deleted; both lists come back. {narrow} restricts all of it to a batch of contacts.
    private const string Diff = """
        WITH matched AS MATERIALIZED (
            SELECT c.contact_id FROM contacts c
            WHERE c.tenant_id = @tenant{narrow_c} AND ({predicate})
        ), entered AS (
            INSERT INTO segment_members (tenant_id, segment_id, contact_id, entered_at)
            SELECT @tenant, @segment, contact_id, @now FROM matched
            ON CONFLICT (tenant_id, segment_id, contact_id) DO NOTHING
            RETURNING contact_id
        ), gone AS (
            DELETE FROM segment_members sm
            WHERE sm.tenant_id = @tenant AND sm.segment_id = @segment{narrow_sm}
              AND NOT EXISTS (SELECT 1 FROM matched m WHERE m.contact_id = sm.contact_id)
            RETURNING sm.contact_id
        )
        SELECT (SELECT coalesce(array_agg(contact_id ORDER BY contact_id), '{}') FROM entered) AS entered,
               (SELECT coalesce(array_agg(contact_id ORDER BY contact_id), '{}') FROM gone) AS left
        """;

    /// <summary>Brings one segment's membership up to date, for everyone or for a batch of contacts.</summary>
    private async Task<Change> EvaluateAsync(TenantTransaction scope, string tenant, SegmentRow segment, DateTimeOffset now,
        Guid[]? contacts, CancellationToken ct)
    {
        var compiled = RuleCompiler.Compile(V1.Rule.Parser.ParseJson(segment.Rule), now, restricted: contacts is not null);
        var p = compiled.Parameters;
        p.Add("tenant", tenant);
        p.Add("segment", segment.SegmentId);
        p.Add("now", now.UtcDateTime);
        if (contacts is not null) p.Add("contacts", contacts);
        var sql = Diff
            .Replace("{narrow_c}", contacts is null ? "" : " AND c.contact_id = ANY(@contacts)")
            .Replace("{narrow_sm}", contacts is null ? "" : " AND sm.contact_id = ANY(@contacts)")
            .Replace("{predicate}", compiled.Predicate);
        var (entered, left) = await scope.Connection.QuerySingleAsync<(Guid[], Guid[])>(new CommandDefinition(
            sql, p, scope.Transaction, commandTimeout: (int)options.EvaluationTimeout.TotalSeconds, cancellationToken: ct));
        return new Change(segment.SegmentId, entered, left);
    }

    /// <summary>Member counts and evaluation times of the segments evaluated, and the changes published.</summary>
    private async Task RecordAsync(TenantTransaction scope, string tenant, IReadOnlyList<Change> changes, DateTimeOffset now, CancellationToken ct)
    {
        if (changes.Count == 0) return;
        await scope.Connection.ExecuteAsync(new CommandDefinition("""
            UPDATE segments s SET member_count = s.member_count + d.delta, evaluated_at = @now
            FROM unnest(@ids, @deltas) AS d(segment_id, delta)
            WHERE s.tenant_id = @tenant AND s.segment_id = d.segment_id
            """, new
        {
            tenant, now = now.UtcDateTime,
            ids = changes.Select(c => c.SegmentId).ToArray(),
            deltas = changes.Select(c => (long)c.Entered.Length - c.Left.Length).ToArray(),
        }, scope.Transaction, cancellationToken: ct));
        await PublishAsync(scope, tenant, changes, now);
    }

    /// <summary>One SegmentMembershipChanged per segment that changed, split when it lists more than EventBatchSize contacts.</summary>
    private Task PublishAsync(TenantTransaction scope, string tenant, IReadOnlyList<Change> changes, DateTimeOffset now)
    {
        var events = new List<SegmentMembershipChanged>();
        var n = options.EventBatchSize;
        foreach (var c in changes)
        {
            var parts = Math.Max((c.Entered.Length + n - 1) / n, (c.Left.Length + n - 1) / n);
            for (var i = 0; i < parts; i++)
                events.Add(new SegmentMembershipChanged(tenant, c.SegmentId, Slice(c.Entered, i, n), Slice(c.Left, i, n), now));
        }
        return BuildingBlocks.Outbox.Outbox.EnqueueManyAsync(scope.Connection, scope.Transaction, events);
    }

    private static Guid[] Slice(Guid[] all, int part, int size) =>
        part * size >= all.Length ? [] : all.AsSpan(part * size, Math.Min(size, all.Length - part * size)).ToArray();

    /// <summary>
    /// A batch of contacts events touched, against every segment of the tenant, readers after the segments they
    /// read: one statement per segment narrowed to the batch. Erased contacts are no longer in contacts, so
    /// they leave every segment here.
    /// </summary>
    public async Task RefreshAsync(RefreshBatch batch, CancellationToken ct)
    {
        await LockAsync(batch.Scope, batch.Tenant, ct);
        var all = await LoadAllAsync(batch.Scope, batch.Tenant, ct);
        if (all.Count == 0) return;
        var changes = new List<Change>(all.Count);
        foreach (var s in InDependencyOrder(all))
            changes.Add(await EvaluateAsync(batch.Scope, batch.Tenant, s, batch.Now, batch.Contacts, ct));
        await RecordAsync(batch.Scope, batch.Tenant, changes, batch.Now, ct);
    }

    /// <summary>
    /// Re-evaluates, over the whole tenant, the segments whose rules move with the clock (and the segments that
    /// read them), each in its own transaction so that refreshes of dirty contacts interleave.
    /// </summary>
    /// <returns>How many segments were evaluated.</returns>
    public async Task<int> ReevaluateTimeRelativeAsync(string tenant, CancellationToken ct)
    {
        List<SegmentRow> due;
        await using (var scope = await db.BeginAsync(tenant, ct))
        {
            var all = await LoadAllAsync(scope, tenant, ct);
            var moving = Dependents(all, all.Where(s => s.TimeRelative).Select(s => s.SegmentId));
            due = InDependencyOrder(all).Where(s => moving.Contains(s.SegmentId)).ToList();
        }
        foreach (var s in due)
        {
            await using var scope = await db.BeginAsync(tenant, ct);
            await LockAsync(scope, tenant, ct);
            if (await GetRowAsync(scope, tenant, s.SegmentId, ct) is not { } current) continue; // deleted meanwhile
            var now = time.GetUtcNow();
            await RecordAsync(scope, tenant, [await EvaluateAsync(scope, tenant, current, now, null, ct)], now, ct);
            await scope.CommitAsync(ct);
        }
        return due.Count;
    }

    /// <summary>The tenants that have segments moving with the clock (a named cross-tenant read).</summary>
    public async Task<string[]> TenantsWithTimeRelativeSegmentsAsync(CancellationToken ct)
    {
        await using var scope = await db.BeginCrossTenantAsync("time-relative segments: which tenants have them", ct);
        return (await scope.Connection.QueryAsync<string>(new CommandDefinition(
            "SELECT DISTINCT tenant_id FROM segments WHERE time_relative", transaction: scope.Transaction, cancellationToken: ct))).ToArray();
    }

    internal ILogger Logger => logger;
}

/// <summary>Re-evaluates time-relative segments every Segmentation:TimeRelativeInterval.</summary>
public sealed class TimeRelativeReevaluation(SegmentEngine engine, SegmentOptions options, TimeProvider time) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try { await Task.Delay(options.TimeRelativeInterval, time, stoppingToken); }
            catch (OperationCanceledException) { return; }
            try
            {
                foreach (var tenant in await engine.TenantsWithTimeRelativeSegmentsAsync(stoppingToken))
                    await engine.ReevaluateTimeRelativeAsync(tenant, stoppingToken);
            }
            catch (Exception ex) when (!stoppingToken.IsCancellationRequested)
            {
                engine.Logger.LogError(ex, "Re-evaluating time-relative segments failed; retrying at the next interval");
            }
        }
    }
}
