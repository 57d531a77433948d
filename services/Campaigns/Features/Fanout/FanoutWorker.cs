using Crm.BuildingBlocks.Data;
using Crm.BuildingBlocks.Outbox;
using Crm.Campaigns.Features.Campaigns;
using Crm.Campaigns.Features.Settings;
using Crm.Campaigns.Features.Templates;
using Crm.Contracts.Delivery;
using Dapper;

namespace Crm.Campaigns.Features.Fanout;

/// <summary>
/// Hands a run's recipients to Delivery, one page per transaction: the run's row is taken (FOR UPDATE: a
/// pause or a cancel waits for the page in flight, and the page sees a pause committed before it), the next
/// page of pending recipients after the durable cursor is read, rendered, written to the outbox as
/// DeliverMessage commands, marked enqueued, and the cursor advanced, all committed together. A crash
/// loses at most an uncommitted page, which the next worker takes again; a command published twice by the
/// outbox relay carries the same idempotency key <c>camp:{run}:{contact}:{step}</c>, which Delivery's
/// dedupe accepts once. So a crash, a redelivery or a pause/resume never sends twice, and nobody is skipped.
/// </summary>
public sealed class FanoutWorker(TenantDb db, TimeProvider time, CampaignsOptions options, ILogger<FanoutWorker> logger)
{
    /// <summary>Delivery sends these; push and kakao are skipped to the next channel until it does.</summary>
    public static readonly string[] DeliverableChannels = ["email", "sms"];

    public static string IdempotencyKey(Guid runId, Guid contactId, int step) => $"camp:{runId:N}:{contactId:N}:{step}";

    public enum PageResult { Sent, Done, Stopped }

    /// <summary>What a run renders with, loaded once per claim.</summary>
    public sealed class RunContext
    {
        public required string Tenant { get; init; }
        public required Guid RunId { get; init; }
        public required CampaignEngine.CampaignRow Campaign { get; init; }
        public required Dictionary<string, Guid> VariantTemplates { get; init; }
        public required Dictionary<Guid, CompiledTemplate> Templates { get; init; }
        public required string DefaultLocale { get; init; }
    }

    public async Task<RunContext> LoadAsync(string tenant, Guid runId, Guid campaignId, CancellationToken ct)
    {
        await using var scope = await db.BeginAsync(tenant, ct);
        var campaign = await CampaignEngine.GetRowAsync(scope, tenant, campaignId, ct) ?? throw new InvalidOperationException($"Campaign {campaignId} is gone.");
        var variants = (await CampaignEngine.VariantsAsync(scope, tenant, [campaignId], ct)).GetValueOrDefault(campaignId) ?? [];
        var fallbacks = System.Text.Json.JsonSerializer.Deserialize<Dictionary<string, string>>(campaign.FallbackTemplates) ?? [];
        var ids = variants.Select(v => v.TemplateId).Concat(fallbacks.Values.Select(Guid.Parse));
        if (campaign.TemplateId is { } t) ids = ids.Append(t);
        var settings = await CampaignSettingsStore.GetAsync(scope, tenant, ct);
        return new RunContext
        {
            Tenant = tenant, RunId = runId, Campaign = campaign,
            VariantTemplates = variants.ToDictionary(v => v.VariantId, v => v.TemplateId),
            Templates = await TemplateEngine.CompileAsync(scope, tenant, ids.Distinct().ToArray(), ct),
            DefaultLocale = settings.DefaultLocale,
        };
    }

    private sealed record Pending(Guid ContactId, string? VariantId, DateTime? SendAt);

    public async Task<PageResult> SendPageAsync(RunContext run, CancellationToken ct)
    {
        var tenant = run.Tenant;
        var now = time.GetUtcNow();
        await using var scope = await db.BeginAsync(tenant, ct);
        var (status, cursor) = await scope.Connection.QuerySingleAsync<(string, Guid?)>(new CommandDefinition(
            "SELECT status, cursor FROM campaign_runs WHERE tenant_id = @tenant AND run_id = @runId FOR UPDATE",
            new { tenant, runId = run.RunId }, scope.Transaction, cancellationToken: ct));
        if (status != "sending") return PageResult.Stopped;
        var page = (await scope.Connection.QueryAsync<Pending>(new CommandDefinition("""
            SELECT contact_id, variant_id, send_at FROM recipients
            WHERE tenant_id = @tenant AND run_id = @runId AND status = 'pending' AND (@cursor::uuid IS NULL OR contact_id > @cursor)
            ORDER BY contact_id LIMIT @limit
            """, new { tenant, runId = run.RunId, cursor, limit = options.FanoutPageSize }, scope.Transaction, cancellationToken: ct))).AsList();
        if (page.Count == 0)
        {
            await scope.Connection.ExecuteAsync(new CommandDefinition(
                "UPDATE campaign_runs SET status = 'waiting', fanned_out_at = @now WHERE tenant_id = @tenant AND run_id = @runId",
                new { tenant, runId = run.RunId, now = now.UtcDateTime }, scope.Transaction, cancellationToken: ct));
            await scope.CommitAsync(ct);
            return PageResult.Done;
        }

        var facts = await TemplateModel.LoadAsync(scope, tenant, page.Select(p => p.ContactId).ToArray(), ct);
        var info = new TemplateModel.CampaignInfo(run.Campaign.CampaignId, run.Campaign.Name, run.Campaign.DataMap);
        var requests = new List<DeliveryRequest>(page.Count);
        var outcome = new List<(Guid Contact, string Status, string? Channel, string? Reason)>(page.Count);
        foreach (var p in page)
        {
            var f = facts.GetValueOrDefault(p.ContactId) ?? TemplateModel.Empty(p.ContactId);
            var (request, reason) = await RenderAsync(run, p, f, info);
            if (request is null) outcome.Add((p.ContactId, "skipped", null, reason));
            else
            {
                requests.Add(request);
                outcome.Add((p.ContactId, "enqueued", request.Channel, null));
            }
        }
        await Outbox.EnqueueManyAsync(scope.Connection, scope.Transaction,
            requests.Chunk(options.MessagesPerCommand).Select(chunk => new DeliverMessage(tenant, chunk)));
        await scope.Connection.ExecuteAsync(new CommandDefinition("""
            UPDATE recipients r SET status = x.status, channel = x.channel, reason = x.reason,
                enqueued_at = CASE WHEN x.status = 'enqueued' THEN @now END, outcome_at = CASE WHEN x.status = 'skipped' THEN @now END
            FROM unnest(@contacts, @statuses, @channels, @reasons) AS x(contact_id, status, channel, reason)
            WHERE r.tenant_id = @tenant AND r.run_id = @runId AND r.contact_id = x.contact_id AND r.status = 'pending';
            UPDATE campaign_runs SET cursor = @last WHERE tenant_id = @tenant AND run_id = @runId;
            """, new
        {
            tenant, runId = run.RunId, now = now.UtcDateTime, last = page[^1].ContactId,
            contacts = outcome.Select(o => o.Contact).ToArray(), statuses = outcome.Select(o => o.Status).ToArray(),
            channels = outcome.Select(o => o.Channel).ToArray(), reasons = outcome.Select(o => o.Reason).ToArray(),
        }, scope.Transaction, cancellationToken: ct));
        await scope.CommitAsync(ct);
        return PageResult.Sent;
    }

    /// <summary>The first channel (in the campaign's order) Delivery sends on and the contact has an address for.</summary>
    private async Task<(DeliveryRequest?, string?)> RenderAsync(RunContext run, Pending p, TemplateModel.Facts f, TemplateModel.CampaignInfo info)
    {
        var c = run.Campaign;
        var fallbacks = System.Text.Json.JsonSerializer.Deserialize<Dictionary<string, string>>(c.FallbackTemplates) ?? [];
        for (var i = 0; i < c.Channels.Length; i++)
        {
            var channel = c.Channels[i];
            if (!DeliverableChannels.Contains(channel)) continue;
            // A contact the projection has not seen yet is tried on the first channel: Delivery knows its addresses.
            if (f.HasEmail is not null && !(channel == "email" ? f.HasEmail.Value : f.HasPhone ?? false)) continue;
            Guid? templateId = i == 0
                ? p.VariantId is { } v && run.VariantTemplates.TryGetValue(v, out var vt) ? vt : c.TemplateId
                : fallbacks.TryGetValue(channel, out var ft) ? Guid.Parse(ft) : null;
            if (templateId is not { } tid || !run.Templates.TryGetValue(tid, out var template)) return (null, $"template of {channel} is gone");
            var (_, parts) = template.Pick(f.Locale, run.DefaultLocale);
            V1.RenderedMessage rendered;
            try
            {
                rendered = await CompiledTemplate.RenderAsync(channel, parts, TemplateModel.Build(f, info));
            }
            catch (TemplateRenderException e)
            {
                logger.LogWarning("Run {Run}: template {Template} failed for {Contact}: {Error}", run.RunId, tid, p.ContactId, e.Message);
                return (null, $"template failed: {e.Message}");
            }
            return (new DeliveryRequest(
                IdempotencyKey(run.RunId, p.ContactId, 0), p.ContactId, channel, c.Purpose,
                CampaignId: c.CampaignId.ToString(), Category: c.Category,
                Subject: channel == "email" ? rendered.Subject : null,
                TextBody: channel == "email" ? NullIfEmpty(rendered.TextBody) : rendered.SmsText,
                HtmlBody: channel == "email" ? NullIfEmpty(rendered.HtmlBody) : null,
                ExpiresAt: c.ExpiresAt is { } expires ? new DateTimeOffset(DateTime.SpecifyKind(expires, DateTimeKind.Utc)) : null,
                SendAt: p.SendAt is { } s ? new DateTimeOffset(DateTime.SpecifyKind(s, DateTimeKind.Utc)) : null), null);
        }
        return (null, "no address on any of the campaign's channels");
    }

    private static string? NullIfEmpty(string s) => s.Length == 0 ? null : s;
}

public static class FanoutRegistration
{
    public static IServiceCollection AddFanout(this IServiceCollection services)
    {
        services.AddSingleton<FanoutWorker>();
        return services;
    }
}
