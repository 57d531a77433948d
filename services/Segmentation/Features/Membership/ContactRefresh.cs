using Crm.BuildingBlocks.Data;
using Dapper;

namespace Crm.Segmentation.Features.Membership;

/// <summary>
/// One batch of contacts an event touched, inside the transaction that claimed them. Every capability that
/// keeps per-contact state derived from the projections (tiers, lead scores, segment membership) brings it
/// up to date for these contacts in the same transaction, and publishes what changed through the outbox.
/// </summary>
public sealed record RefreshBatch(TenantTransaction Scope, string Tenant, Guid[] Contacts, DateTimeOffset Now);

public interface IContactRefresher
{
    /// <summary>Refreshers run in ascending order: segments come last, since rules read tiers and lead scores.</summary>
    int Order { get; }

    Task RefreshAsync(RefreshBatch batch, CancellationToken ct);
}

public sealed class SegmentationOptions
{
    public const string Section = "Segmentation";

    /// <summary>How often the refresh looks for dirty contacts when it found none.</summary>
    public TimeSpan RefreshInterval { get; set; } = TimeSpan.FromMilliseconds(500);

    /// <summary>Contacts re-evaluated in one transaction.</summary>
    public int RefreshBatchSize { get; set; } = 5000;
}

/// <summary>
/// Re-evaluates contacts that events touched, in batches: within a second or so of an order, an engagement
/// event, a consent change or an erasure, the contact's tiers, lead score and segments are up to date and the
/// changes are published. Contacts are claimed per tenant with <c>FOR UPDATE SKIP LOCKED</c>, so replicas
/// share the work; a contact marked again while its batch runs waits for that batch and is taken next round.
/// </summary>
public sealed class ContactRefresh(TenantDb db, IEnumerable<IContactRefresher> refreshers, SegmentationOptions options,
    TimeProvider time, ILogger<ContactRefresh> logger) : BackgroundService
{
    private readonly IContactRefresher[] _refreshers = refreshers.OrderBy(r => r.Order).ToArray();

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            var done = 0;
            try
            {
                done = await RunOnceAsync(stoppingToken);
            }
            catch (Exception ex) when (!stoppingToken.IsCancellationRequested)
            {
                logger.LogError(ex, "Refreshing dirty contacts failed; retrying");
            }
            if (done == 0)
            {
                try { await Task.Delay(options.RefreshInterval, time, stoppingToken); }
                catch (OperationCanceledException) { return; }
            }
        }
    }

    /// <returns>How many contacts were refreshed.</returns>
    public async Task<int> RunOnceAsync(CancellationToken ct)
    {
        string[] tenants;
        await using (var all = await db.BeginCrossTenantAsync("membership refresh: which tenants have dirty contacts", ct))
        {
            tenants = (await all.Connection.QueryAsync<string>(new CommandDefinition(
                "SELECT DISTINCT tenant_id FROM dirty_contacts LIMIT 1000", transaction: all.Transaction, cancellationToken: ct))).ToArray();
        }
        var done = 0;
        foreach (var tenant in tenants) done += await RefreshTenantAsync(tenant, ct);
        return done;
    }

    private async Task<int> RefreshTenantAsync(string tenant, CancellationToken ct)
    {
        await using var scope = await db.BeginAsync(tenant, ct);
        var contacts = (await scope.Connection.QueryAsync<Guid>(new CommandDefinition("""
            DELETE FROM dirty_contacts d
            USING (SELECT contact_id FROM dirty_contacts WHERE tenant_id = @tenant
                   ORDER BY contact_id LIMIT @limit FOR UPDATE SKIP LOCKED) c
            WHERE d.tenant_id = @tenant AND d.contact_id = c.contact_id
            RETURNING d.contact_id
            """, new { tenant, limit = options.RefreshBatchSize }, scope.Transaction, cancellationToken: ct))).ToArray();
        if (contacts.Length == 0) return 0;
        Array.Sort(contacts);
        var batch = new RefreshBatch(scope, tenant, contacts, time.GetUtcNow());
        foreach (var r in _refreshers) await r.RefreshAsync(batch, ct);
        await scope.CommitAsync(ct);
        return contacts.Length;
    }
}
