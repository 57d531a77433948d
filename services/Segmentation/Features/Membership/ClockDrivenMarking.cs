using Crm.BuildingBlocks.Data;
using Dapper;

namespace Crm.Segmentation.Features.Membership;

/// <summary>
/// State that moves with the clock alone (a lead score decaying, an order leaving a tier's trailing window)
/// changes without any event to mark its contacts dirty. A job of this kind marks them, per tenant, on a
/// schedule; the refresh then re-evaluates them in its batches with every refresher, so that segments reading
/// lead scores or tiers move with them and every change is published the one way it always is.
/// </summary>
public abstract class ClockDrivenMarking(TenantDb db, TimeProvider time, TimeSpan interval, ILogger logger) : BackgroundService
{
    /// <summary>The interval set as <c>Segmentation:&lt;name&gt;</c>, one hour by default; a start-up error when not positive.</summary>
    protected static TimeSpan IntervalSetting(IConfiguration configuration, string name)
    {
        var interval = configuration.GetSection(SegmentationOptions.Section).GetValue(name, TimeSpan.FromHours(1));
        if (interval <= TimeSpan.Zero) throw new InvalidOperationException($"{SegmentationOptions.Section}:{name} must be positive.");
        return interval;
    }

    /// <summary>A cross-tenant query of the tenants to look at (one column, tenant_id).</summary>
    protected abstract string TenantsSql { get; }

    /// <summary>Marks the tenant's contacts whose state may have moved; parameters <c>@tenant</c> and <c>@now</c>.</summary>
    protected abstract string MarkSql { get; }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try { await Task.Delay(interval, time, stoppingToken); }
            catch (OperationCanceledException) { return; }
            try
            {
                await RunOnceAsync(stoppingToken);
            }
            catch (Exception ex) when (!stoppingToken.IsCancellationRequested)
            {
                logger.LogError(ex, "Marking contacts for re-evaluation failed; trying again in {Interval}", interval);
            }
        }
    }

    /// <returns>The rows the marking statements affected.</returns>
    public async Task<int> RunOnceAsync(CancellationToken ct)
    {
        string[] tenants;
        await using (var all = await db.BeginCrossTenantAsync(GetType().Name + ": which tenants to look at", ct))
        {
            tenants = (await all.Connection.QueryAsync<string>(new CommandDefinition(TenantsSql, transaction: all.Transaction, cancellationToken: ct))).ToArray();
        }
        var affected = 0;
        foreach (var tenant in tenants)
        {
            await using var scope = await db.BeginAsync(tenant, ct);
            affected += await scope.Connection.ExecuteAsync(new CommandDefinition(MarkSql, new { tenant, now = time.GetUtcNow().ToUniversalTime() },
                scope.Transaction, cancellationToken: ct));
            await scope.CommitAsync(ct);
        }
        return affected;
    }
}

public static class TenantContacts
{
    /// <summary>Registers a refresher and the job that marks the contacts whose state it derives moves with the clock.</summary>
    public static IServiceCollection AddRefresher<TRefresher, TMarking>(this IServiceCollection services)
        where TRefresher : class, IContactRefresher
        where TMarking : ClockDrivenMarking
    {
        services.AddSingleton<TRefresher>();
        services.AddSingleton<IContactRefresher>(sp => sp.GetRequiredService<TRefresher>());
        services.AddHostedService<TMarking>();
        return services;
    }

    /// <summary>Marks every contact of <c>@tenant</c> dirty: settings changed that every contact's state depends on.</summary>
    public static Task MarkAllDirtyAsync(TenantTransaction scope, CancellationToken ct) =>
        scope.Connection.ExecuteAsync(new CommandDefinition("""
            INSERT INTO dirty_contacts (tenant_id, contact_id)
            SELECT tenant_id, contact_id FROM contacts WHERE tenant_id = @tenant
            ON CONFLICT (tenant_id, contact_id) DO UPDATE SET marked_at = now()
            """, new { tenant = scope.Tenant }, scope.Transaction, cancellationToken: ct));
}
