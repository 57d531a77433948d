using System.Collections.Concurrent;
using System.Globalization;
using System.Runtime.CompilerServices;
using Crm.BuildingBlocks.Data;
using Crm.BuildingBlocks.Errors;
using Crm.BuildingBlocks.Tenancy;
using Crm.Contacts.V1;
using Crm.Contracts.Contacts;
using Crm.Segmentation.Features.Projections;
using Dapper;
using Grpc.Core;
using Grpc.Net.Client;
using Microsoft.Extensions.Options;

namespace Crm.Segmentation.Features.Backfill;

/// <summary>
/// Rebuilds a tenant's projections (profiles, consents, unreachable channels, orders, engagement) from
/// Contacts' exports, in the background, while the event consumers keep running.
///
/// Why nothing is lost or counted twice: every export stream reads one snapshot S of Contacts, and every
/// change committed after S reaches us as an event (its outbox row is written in the change's own
/// transaction, so it is published after S). Pages are applied through the same writers the consumers
/// use, and each writer is idempotent and ordered: profiles, consents and unreachable channels apply
/// last-writer-wins by a version that an export and the change's event share (so a snapshot row never
/// replaces a newer event, and an old event never replaces a newer snapshot row); orders and engagement
/// are keyed by their ids (an order counted twice would need two rows with one key); engagement never
/// changes; a known order is replaced by the backfill only when its row was written before the rebuild
/// began (before S: no newer than the snapshot), since a later row may hold an event newer than S.
/// A contact erased meanwhile stays erased: every writer skips contacts in erased_contacts, and the
/// erasure deletes whatever the backfill wrote before it.
///
/// Contacts authorizes each export call when it starts, so the caller's own token (forwarded; services
/// cannot mint one) only has to be valid when the streams open: all four are opened, and have taken
/// their snapshots, before the call returns. The rebuild keeps a cursor per export, so a rebuild whose
/// replica stopped (its lease lapses) or that failed is resumed by the next RebuildProjections call.
/// </summary>
public sealed class ProjectionRebuild(TenantDb db, ContactsExports contacts, IOptions<BackfillOptions> options, ILogger<ProjectionRebuild> logger)
    : IHostedService
{
    private readonly BackfillOptions _options = options.Value;
    private readonly CancellationTokenSource _stopping = new();
    private readonly ConcurrentDictionary<Guid, Task> _running = new();

    /// <summary>Starts a rebuild of the caller's tenant (or resumes its unfinished one); returns once the exports are open.</summary>
    /// <param name="authorization">The caller's <c>authorization</c> header, forwarded to Contacts.</param>
    public async Task<RebuildRow> StartAsync(CallerIdentity caller, string? authorization, CancellationToken ct)
    {
        if (!caller.Has(Scope.ContactsRead))
            throw new RpcException(new Status(StatusCode.PermissionDenied,
                "A rebuild reads Contacts' exports with the caller's token: it needs the 'contacts.read' scope as well as 'segments.write'."));
        var client = contacts.Client ?? throw new RpcException(new Status(StatusCode.FailedPrecondition,
            "ConnectionStrings:Contacts is not configured: this Segmentation cannot reach Contacts."));
        var tenant = caller.TenantId;

        await using var scope = await db.BeginAsync(tenant, ct);
        var (conn, tx) = scope;
        // One start at a time per tenant: the latest rebuild decides whether this call starts, resumes or joins.
        await conn.ExecuteAsync("SELECT pg_advisory_xact_lock(hashtextextended('segmentation.rebuild:' || @tenant, 0))", new { tenant }, tx);
        var latest = await conn.QuerySingleOrDefaultAsync<RebuildRow>(
            $"SELECT {Columns} FROM rebuilds WHERE tenant_id = @tenant ORDER BY started_at DESC LIMIT 1", new { tenant }, tx);
        if (latest is { Status: "running", LeaseLive: true }) return latest; // running on some replica: join it

        RebuildRow rebuild;
        if (latest is { Status: "running" or "failed" })
        {
            rebuild = await conn.QuerySingleAsync<RebuildRow>($"""
                UPDATE rebuilds SET status = 'running', failure = NULL, finished_at = NULL, lease_until = now() + @lease
                WHERE tenant_id = @tenant AND rebuild_id = @id
                RETURNING {Columns}
                """, new { tenant, id = latest.RebuildId, lease = _options.Lease }, tx);
            logger.LogInformation("Resuming rebuild {RebuildId} of {Tenant}", rebuild.RebuildId, tenant);
        }
        else
        {
            rebuild = await conn.QuerySingleAsync<RebuildRow>($"""
                INSERT INTO rebuilds (tenant_id, rebuild_id, status, lease_until) VALUES (@tenant, @id, 'running', now() + @lease)
                RETURNING {Columns}
                """, new { tenant, id = Guid.CreateVersion7(), lease = _options.Lease }, tx);
        }

        var streams = OpenStreams(client, rebuild, authorization);
        try
        {
            // Authorized, and each snapshot taken, before the caller hears that the rebuild runs.
            await Task.WhenAll(streams.Select(s => s.ReadyAsync()));
        }
        catch
        {
            foreach (var s in streams) s.Dispose();
            throw; // Contacts' refusal (PERMISSION_DENIED, UNAUTHENTICATED, UNAVAILABLE) is the caller's answer; nothing is recorded
        }
        await scope.CommitAsync(ct);
        var id = rebuild.RebuildId;
        _running[id] = Task.Run(() => RunAsync(tenant, rebuild, streams, _stopping.Token));
        return rebuild;
    }

    public async Task<RebuildRow> GetAsync(string tenant, Guid rebuildId, CancellationToken ct)
    {
        await using var scope = await db.BeginAsync(tenant, ct);
        return await scope.Connection.QuerySingleOrDefaultAsync<RebuildRow>(new CommandDefinition(
            $"SELECT {Columns} FROM rebuilds WHERE tenant_id = @tenant AND rebuild_id = @rebuildId", new { tenant, rebuildId }, scope.Transaction, cancellationToken: ct))
            ?? throw new NotFoundException($"Rebuild {rebuildId} not found.");
    }

    private const string Columns = """
        rebuild_id, status, contacts, consents, orders, engagement_events, cursors::text AS cursors, done, started_at, finished_at, failure,
        coalesce(lease_until > now(), false) AS lease_live
        """;

    private List<IExportStream> OpenStreams(ContactsService.ContactsServiceClient client, RebuildRow rebuild, string? authorization)
    {
        var headers = new Metadata();
        if (authorization is not null) headers.Add("authorization", authorization);
        var options = new CallOptions(headers);
        var cursors = rebuild.CursorMap();
        ExportRequest Request(string name) => new() { PageSize = _options.PageSize, PageToken = cursors.GetValueOrDefault(name, "") };
        var streams = new List<IExportStream>();
        // In this order, so that most contacts have their profile before their orders mark them dirty.
        if (!rebuild.Done.Contains("contacts"))
            streams.Add(new ExportStream<ExportContactsResponse>("contacts", client.ExportContacts(Request("contacts"), options),
                p => new Page(p.Contacts.Count, p.NextPageToken, (scope, tenant, ct) => ApplyContactsAsync(scope, tenant, p, ct))));
        if (!rebuild.Done.Contains("consents"))
            streams.Add(new ExportStream<ExportConsentsResponse>("consents", client.ExportConsents(Request("consents"), options),
                p => new Page(p.Consents.Count, p.NextPageToken, (scope, tenant, ct) => ConsentProjection.ApplyAsync(scope, tenant,
                    p.Consents.Select(c => new ConsentProjection.Row(Guid.Parse(c.ContactId), ExportWords.Of(c.Consent.Channel), ExportWords.Of(c.Consent.Purpose),
                        ExportWords.Of(c.Consent.Status), c.Consent.ChangedAt.ToDateTimeOffset())).ToArray(), ct))));
        if (!rebuild.Done.Contains("orders"))
            streams.Add(new ExportStream<ExportOrdersResponse>("orders", client.ExportOrders(Request("orders"), options),
                p => new Page(p.Orders.Count, p.NextPageToken, (scope, tenant, ct) =>
                    OrderProjection.ApplyAsync(scope, tenant, p.Orders.Select(ToRecorded).ToArray(), rebuild.StartedAt, ct))));
        if (!rebuild.Done.Contains("engagement"))
            streams.Add(new ExportStream<ExportEngagementResponse>("engagement", client.ExportEngagement(Request("engagement"), options),
                p => new Page(p.Events.Count, p.NextPageToken, (scope, tenant, ct) =>
                    EngagementProjection.ApplyAsync(scope, tenant, p.Events.Select(ToRecorded).ToArray(), ct))));
        return streams;
    }

    private async Task RunAsync(string tenant, RebuildRow rebuild, List<IExportStream> streams, CancellationToken stopping)
    {
        try
        {
            foreach (var stream in streams)
            {
                await foreach (var page in stream.ReadAsync(stopping))
                {
                    await using var scope = await db.BeginAsync(tenant, stopping);
                    // The lease first: a replica that lost it (another resumed the rebuild) stops here.
                    var ours = await scope.Connection.ExecuteAsync(new CommandDefinition("""
                        UPDATE rebuilds SET
                            contacts = contacts + CASE WHEN @name = 'contacts' THEN @rows ELSE 0 END,
                            consents = consents + CASE WHEN @name = 'consents' THEN @rows ELSE 0 END,
                            orders = orders + CASE WHEN @name = 'orders' THEN @rows ELSE 0 END,
                            engagement_events = engagement_events + CASE WHEN @name = 'engagement' THEN @rows ELSE 0 END,
                            cursors = cursors || jsonb_build_object(@name, @token),
                            lease_until = now() + @lease
                        WHERE tenant_id = @tenant AND rebuild_id = @id AND status = 'running'
                        """, new { tenant, id = rebuild.RebuildId, name = stream.Name, rows = (long)page.Rows, token = page.Token, lease = _options.Lease },
                        scope.Transaction, cancellationToken: stopping));
                    if (ours == 0) throw new InvalidOperationException("The rebuild was taken over by another replica.");
                    await page.ApplyAsync(scope, tenant, stopping);
                    await scope.CommitAsync(stopping);
                }
                await ExecuteAsync(tenant, "UPDATE rebuilds SET done = array_append(done, @name) WHERE tenant_id = @tenant AND rebuild_id = @id",
                    new { tenant, id = rebuild.RebuildId, name = stream.Name }, stopping);
            }
            await ExecuteAsync(tenant, """
                UPDATE rebuilds SET status = 'succeeded', finished_at = now(), lease_until = NULL WHERE tenant_id = @tenant AND rebuild_id = @id
                """, new { tenant, id = rebuild.RebuildId }, stopping);
            logger.LogInformation("Rebuild {RebuildId} of {Tenant} succeeded", rebuild.RebuildId, tenant);
        }
        catch (Exception ex) when (stopping.IsCancellationRequested)
        {
            // Shutting down: the lease lapses and the next RebuildProjections resumes from the cursors.
            logger.LogInformation(ex, "Rebuild {RebuildId} of {Tenant} interrupted by shutdown", rebuild.RebuildId, tenant);
        }
        catch (Exception ex)
        {
            logger.LogError(ex, "Rebuild {RebuildId} of {Tenant} failed", rebuild.RebuildId, tenant);
            try
            {
                await ExecuteAsync(tenant, """
                    UPDATE rebuilds SET status = 'failed', failure = @failure, finished_at = now(), lease_until = NULL
                    WHERE tenant_id = @tenant AND rebuild_id = @id AND status = 'running'
                    """, new { tenant, id = rebuild.RebuildId, failure = ex is RpcException r ? $"{r.StatusCode}: {r.Status.Detail}" : ex.Message },
                    CancellationToken.None);
            }
            catch (Exception inner)
            {
                logger.LogError(inner, "Could not record the failure of rebuild {RebuildId}; its lease lapses and it can be resumed", rebuild.RebuildId);
            }
        }
        finally
        {
            foreach (var s in streams) s.Dispose();
            _running.TryRemove(rebuild.RebuildId, out _);
        }
    }

    private async Task ExecuteAsync(string tenant, string sql, object args, CancellationToken ct)
    {
        await using var scope = await db.BeginAsync(tenant, ct);
        await scope.Connection.ExecuteAsync(new CommandDefinition(sql, args, scope.Transaction, cancellationToken: ct));
        await scope.CommitAsync(ct);
    }

    private static async Task ApplyContactsAsync(TenantTransaction scope, string tenant, ExportContactsResponse page, CancellationToken ct)
    {
        await ProfileProjection.ApplyAsync(scope, tenant, page.Contacts.Select(c => new ProfileProjection.Row(
            Guid.Parse(c.ContactId), c.ExternalId, NullIfEmpty(c.Locale), NullIfEmpty(c.TimeZone), c.Tags, c.AttributesJson, c.HasEmail, c.HasPhone,
            c.PushTokens, c.Suppressed, c.CreatedAt.ToDateTimeOffset(), c.UpdatedAt.ToDateTimeOffset())).ToArray(), ct);
        await UnreachableProjection.ApplyAsync(scope, tenant, page.Contacts.SelectMany(c => c.Unreachable.Select(u => new UnreachableProjection.Row(
            Guid.Parse(c.ContactId), ExportWords.Of(u.Channel), u.Reason, u.Since?.ToDateTimeOffset() ?? c.UpdatedAt.ToDateTimeOffset()))).ToArray(), ct);
    }

    /// <summary>An exported order as TransactionsRecorded carries it: lines with amount = quantity × unit price.</summary>
    private static RecordedOrder ToRecorded(Order o)
    {
        var lines = o.Lines.Select(l =>
        {
            var quantity = decimal.Parse(l.Quantity, CultureInfo.InvariantCulture);
            return new RecordedLine(l.Sku, NullIfEmpty(l.Category), quantity, quantity * decimal.Parse(l.UnitPrice, CultureInfo.InvariantCulture));
        }).ToArray();
        return new RecordedOrder(Guid.Parse(o.ContactId), o.OrderId, o.OccurredAt.ToDateTimeOffset(), o.Currency,
            decimal.Parse(o.Total, CultureInfo.InvariantCulture), ExportWords.Of(o.Status),
            lines.Select(l => l.Sku).Distinct().ToArray(), lines.Select(l => l.Category).OfType<string>().Distinct().ToArray(), lines);
    }

    private static RecordedEngagement ToRecorded(EngagementEvent e) => new(
        e.EventId, Guid.Parse(e.Contact.Id), ExportWords.Of(e.Type), NullIfEmpty(e.Name),
        e.Channel == Channel.Unspecified ? null : ExportWords.Of(e.Channel), NullIfEmpty(e.MessageId), NullIfEmpty(e.CampaignId),
        e.OccurredAt.ToDateTimeOffset(), e.Properties is null ? "{}" : Google.Protobuf.JsonFormatter.Default.Format(e.Properties));

    private static string? NullIfEmpty(string s) => s.Length == 0 ? null : s;

    Task IHostedService.StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    async Task IHostedService.StopAsync(CancellationToken cancellationToken)
    {
        await _stopping.CancelAsync();
        await Task.WhenAll(_running.Values).WaitAsync(cancellationToken).ContinueWith(_ => { }, TaskScheduler.Default);
    }

    private sealed record Page(int Rows, string Token, Func<TenantTransaction, string, CancellationToken, Task> ApplyAsync);

    private interface IExportStream : IDisposable
    {
        string Name { get; }

        /// <summary>Completes when Contacts sent the stream's headers: the call was authorized and its snapshot taken.</summary>
        Task ReadyAsync();

        IAsyncEnumerable<Page> ReadAsync(CancellationToken ct);
    }

    private sealed class ExportStream<T>(string name, AsyncServerStreamingCall<T> call, Func<T, Page> toPage) : IExportStream
    {
        public string Name => name;

        public Task ReadyAsync() => call.ResponseHeadersAsync;

        public async IAsyncEnumerable<Page> ReadAsync([EnumeratorCancellation] CancellationToken ct)
        {
            await foreach (var message in call.ResponseStream.ReadAllAsync(ct)) yield return toPage(message);
        }

        public void Dispose() => call.Dispose();
    }
}

/// <summary>A rebuild as the rebuilds table keeps it.</summary>
public sealed class RebuildRow
{
    public Guid RebuildId { get; set; }
    public string Status { get; set; } = "";
    public long Contacts { get; set; }
    public long Consents { get; set; }
    public long Orders { get; set; }
    public long EngagementEvents { get; set; }
    public string Cursors { get; set; } = "{}";
    public string[] Done { get; set; } = [];
    public DateTime StartedAt { get; set; }
    public DateTime? FinishedAt { get; set; }
    public string? Failure { get; set; }
    public bool LeaseLive { get; set; }

    public Dictionary<string, string> CursorMap() =>
        System.Text.Json.JsonSerializer.Deserialize<Dictionary<string, string>>(Cursors) ?? [];
}

/// <summary>Contacts' protobuf enums as the words the projections store (and Contacts' events carry).</summary>
internal static class ExportWords
{
    public static string Of(Channel c) => c.ToString().ToLowerInvariant();

    public static string Of(Purpose p) => p == Purpose.MarketingNight ? "marketing_night" : p.ToString().ToLowerInvariant();

    public static string Of(ConsentStatus s) => s == ConsentStatus.OptedIn ? "opted_in" : "opted_out";

    public static string Of(OrderStatus s) => s == OrderStatus.Unspecified ? "completed" : s.ToString().ToLowerInvariant();

    public static string Of(EngagementType t) => t.ToString().ToLowerInvariant();
}

public sealed class BackfillOptions
{
    public const string Section = "Segmentation:Backfill";

    /// <summary>Rows per exported page, applied in one transaction.</summary>
    public int PageSize { get; set; } = 1000;

    /// <summary>How long a rebuild stays claimed by its replica without progress; after it lapses, a new call resumes it.</summary>
    public TimeSpan Lease { get; set; } = TimeSpan.FromMinutes(1);
}

/// <summary>The Contacts service's client, at ConnectionStrings:Contacts (null when not configured).</summary>
public sealed class ContactsExports(IConfiguration configuration) : IDisposable
{
    private readonly GrpcChannel? _channel = string.IsNullOrWhiteSpace(configuration.GetConnectionString("Contacts"))
        ? null
        : GrpcChannel.ForAddress(configuration.GetConnectionString("Contacts")!, new GrpcChannelOptions { MaxReceiveMessageSize = 64 * 1024 * 1024 });

    public ContactsService.ContactsServiceClient? Client => _channel is null ? null : new(_channel);

    public void Dispose() => _channel?.Dispose();
}

public static class BackfillRegistration
{
    public static IServiceCollection AddBackfill(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddOptions<BackfillOptions>().Bind(configuration.GetSection(BackfillOptions.Section))
            .Validate(o => o.PageSize is >= 1 and <= 5000, "Segmentation:Backfill:PageSize must be 1 to 5000")
            .Validate(o => o.Lease >= TimeSpan.FromSeconds(5), "Segmentation:Backfill:Lease must be at least 5 seconds")
            .ValidateOnStart();
        services.AddSingleton<ContactsExports>();
        services.AddSingleton<ProjectionRebuild>();
        services.AddHostedService(sp => sp.GetRequiredService<ProjectionRebuild>());
        return services;
    }
}
