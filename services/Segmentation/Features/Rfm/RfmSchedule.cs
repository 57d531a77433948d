using Crm.BuildingBlocks.Data;
using Crm.Segmentation.Features.Membership;
using Dapper;

namespace Crm.Segmentation.Features.Rfm;

/// <summary>
/// Keeps the stored scores current: every Segmentation:RfmInterval (an hour) it recomputes the tenants whose
/// orders changed since their last computation (see <see cref="RfmChangeDetector"/>), whose scores are older
/// than Segmentation:RfmMaxAge (a day: recency moves with the clock) or were never computed. A recompute of
/// a whole tenant is one statement; the interval bounds how often a busy tenant pays for it.
/// </summary>
public sealed class RfmSchedule(TenantDb db, RfmEngine engine, RfmOptions options, TimeProvider time, ILogger<RfmSchedule> logger)
    : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await RunOnceAsync(stoppingToken);
            }
            catch (Exception ex) when (!stoppingToken.IsCancellationRequested)
            {
                logger.LogError(ex, "Recomputing RFM scores failed; retrying at the next interval");
            }
            try { await Task.Delay(options.RfmInterval, time, stoppingToken); }
            catch (OperationCanceledException) { return; }
        }
    }

    /// <returns>The tenants recomputed.</returns>
    public async Task<int> RunOnceAsync(CancellationToken ct)
    {
        var now = time.GetUtcNow().UtcDateTime;
        string[] tenants;
        await using (var all = await db.BeginCrossTenantAsync("RFM schedule: which tenants' scores are stale", ct))
        {
            tenants = (await all.Connection.QueryAsync<string>(new CommandDefinition("""
                SELECT tenant_id FROM rfm_state
                WHERE orders_changes > computed_changes OR as_of IS NULL OR as_of <= @staleBefore OR as_of > @now
                ORDER BY tenant_id LIMIT 1000
                """, new { now, staleBefore = now - options.RfmMaxAge }, all.Transaction, cancellationToken: ct))).ToArray();
        }
        var done = 0;
        foreach (var tenant in tenants)
        {
            try
            {
                if (await engine.RecomputeAsync(tenant, onlyIfStale: true, ct) is not null) done++;
            }
            catch (Exception ex) when (!ct.IsCancellationRequested)
            {
                logger.LogError(ex, "Recomputing the RFM scores of {Tenant} failed; retrying at the next interval", tenant);
            }
        }
        return done;
    }
}

/// <summary>
/// Tells the schedule that a tenant's orders changed: in the membership refresh (before the other refreshers,
/// which do not read what it writes), it compares the batch's contacts' completed orders since the stored
/// window's start with their stored frequency, monetary and last order, and when any differ (a new order,
/// a cancellation or refund, a backfilled order) counts a change for the tenant. Contacts that a recompute
/// marked dirty match their new scores, so a recompute does not cause another.
/// </summary>
public sealed class RfmChangeDetector : IContactRefresher
{
    public int Order => 5;

    public Task RefreshAsync(RefreshBatch batch, CancellationToken ct) =>
        batch.Scope.Connection.ExecuteAsync(new CommandDefinition("""
            INSERT INTO rfm_state (tenant_id, orders_changes)
            SELECT @tenant, 1
            WHERE EXISTS (
                WITH recorded AS (
                    SELECT contact_id, count(*) AS frequency, sum(total) AS monetary, max(occurred_at) AS last_order_at
                    FROM orders
                    WHERE tenant_id = @tenant AND contact_id = ANY(@contacts) AND status = 'completed'
                      AND occurred_at >= coalesce((SELECT as_of - make_interval(days => window_days) FROM rfm_state WHERE tenant_id = @tenant), '-infinity')
                    GROUP BY contact_id
                ), stored AS (
                    SELECT contact_id, frequency, monetary, last_order_at FROM rfm_scores WHERE tenant_id = @tenant AND contact_id = ANY(@contacts)
                )
                SELECT 1 FROM recorded c FULL JOIN stored s ON s.contact_id = c.contact_id
                WHERE (c.frequency, c.monetary, c.last_order_at) IS DISTINCT FROM (s.frequency, s.monetary, s.last_order_at)
                  AND (c.contact_id IS NOT NULL OR s.last_order_at IS NOT NULL) -- a row no computation wrote is not a change of orders
            )
            ON CONFLICT (tenant_id) DO UPDATE SET orders_changes = rfm_state.orders_changes + 1
            """, new { tenant = batch.Tenant, contacts = batch.Contacts }, batch.Scope.Transaction, cancellationToken: ct));
}
