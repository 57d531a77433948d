using Crm.BuildingBlocks.Data;
using Crm.BuildingBlocks.Errors;
using Crm.BuildingBlocks.Tenancy;
using Crm.Campaigns.Features.Peers;
using Crm.Campaigns.Features.Settings;
using Crm.Campaigns.V1;
using Crm.Delivery.Channels;
using Crm.Delivery.Channels.Sms;
using Dapper;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;

namespace Crm.Campaigns.Features.Templates;

/// <summary>
/// Templates: saved only when every part of every locale parses (INVALID_ARGUMENT naming the field, line and
/// column otherwise); stored as the API gives them, one row per locale; previewed for one contact with the
/// model a send would use.
/// </summary>
public sealed class TemplateEngine(TenantDb db, TimeProvider time, PeerServices peers, ILogger<TemplateEngine> logger)
{
    public const int MaxNameLength = 200;

    private static readonly JsonFormatter ContentJson = new(JsonFormatter.Settings.Default.WithFormatDefaultValues(false));

    private sealed record TemplateRow(Guid TemplateId, string Name, string Channel, DateTime CreatedAt, DateTime UpdatedAt);

    public async Task<Template> CreateAsync(string tenant, Template input, CancellationToken ct)
    {
        Validate(input);
        var id = Guid.NewGuid();
        var now = time.GetUtcNow().UtcDateTime;
        await using var scope = await db.BeginAsync(tenant, ct);
        await scope.Connection.ExecuteAsync(new CommandDefinition("""
            INSERT INTO templates (tenant_id, template_id, name, channel, created_at, updated_at) VALUES (@tenant, @id, @name, @channel, @now, @now)
            """, new { tenant, id, name = input.Name.Trim(), channel = input.Channel, now }, scope.Transaction, cancellationToken: ct));
        await WriteContentsAsync(scope, tenant, id, input, ct);
        var saved = await GetAsync(scope, tenant, id, ct);
        await scope.CommitAsync(ct);
        return saved;
    }

    public async Task<Template> UpdateAsync(string tenant, Template input, CancellationToken ct)
    {
        var id = ParseId(input.TemplateId, "template.template_id");
        Validate(input);
        await using var scope = await db.BeginAsync(tenant, ct);
        var channel = await scope.Connection.ExecuteScalarAsync<string?>(new CommandDefinition(
            "SELECT channel FROM templates WHERE tenant_id = @tenant AND template_id = @id FOR UPDATE", new { tenant, id }, scope.Transaction, cancellationToken: ct))
            ?? throw new NotFoundException($"Template {id} not found.");
        if (channel != input.Channel) throw new InvalidArgumentException("template.channel", $"cannot change (it is {channel}); create a new template");
        await scope.Connection.ExecuteAsync(new CommandDefinition("""
            UPDATE templates SET name = @name, updated_at = @now WHERE tenant_id = @tenant AND template_id = @id;
            DELETE FROM template_contents WHERE tenant_id = @tenant AND template_id = @id;
            """, new { tenant, id, name = input.Name.Trim(), now = time.GetUtcNow().UtcDateTime }, scope.Transaction, cancellationToken: ct));
        await WriteContentsAsync(scope, tenant, id, input, ct);
        var saved = await GetAsync(scope, tenant, id, ct);
        await scope.CommitAsync(ct);
        return saved;
    }

    public async Task<Template> GetAsync(string tenant, string templateId, CancellationToken ct)
    {
        var id = ParseId(templateId, "template_id");
        await using var scope = await db.BeginAsync(tenant, ct);
        return await GetAsync(scope, tenant, id, ct);
    }

    public static async Task<Template> GetAsync(TenantTransaction scope, string tenant, Guid id, CancellationToken ct) =>
        (await LoadAsync(scope, tenant, [id], ct)).GetValueOrDefault(id) ?? throw new NotFoundException($"Template {id} not found.");

    /// <summary>Templates by id (those that exist), with their contents.</summary>
    public static async Task<Dictionary<Guid, Template>> LoadAsync(TenantTransaction scope, string tenant, Guid[] ids, CancellationToken ct)
    {
        var rows = await scope.Connection.QueryAsync<TemplateRow>(new CommandDefinition("""
            SELECT template_id, name, channel, created_at, updated_at FROM templates WHERE tenant_id = @tenant AND template_id = ANY(@ids)
            """, new { tenant, ids }, scope.Transaction, cancellationToken: ct));
        var templates = rows.ToDictionary(r => r.TemplateId, ToProto);
        var contents = await scope.Connection.QueryAsync<(Guid Id, string Content)>(new CommandDefinition("""
            SELECT template_id, content::text FROM template_contents WHERE tenant_id = @tenant AND template_id = ANY(@ids) ORDER BY template_id, locale
            """, new { tenant, ids }, scope.Transaction, cancellationToken: ct));
        foreach (var (id, content) in contents)
            if (templates.TryGetValue(id, out var t)) t.Contents.Add(TemplateContent.Parser.ParseJson(content));
        return templates;
    }

    public async Task<ListTemplatesResponse> ListAsync(string tenant, ListTemplatesRequest request, CancellationToken ct)
    {
        var size = Math.Min(PageToken.Size(request.PageSize), 500);
        var after = PageToken.Decode(request.PageToken) is { } a ? ParseId(a, "page_token") : (Guid?)null;
        await using var scope = await db.BeginAsync(tenant, ct);
        var ids = (await scope.Connection.QueryAsync<Guid>(new CommandDefinition("""
            SELECT template_id FROM templates
            WHERE tenant_id = @tenant AND (@after::uuid IS NULL OR template_id > @after) AND (@channel = '' OR channel = @channel)
            ORDER BY template_id LIMIT @limit
            """, new { tenant, after, channel = request.Channel, limit = size + 1 }, scope.Transaction, cancellationToken: ct))).AsList();
        var page = ids.Take(size).ToArray();
        var templates = await LoadAsync(scope, tenant, page, ct);
        var response = new ListTemplatesResponse();
        response.Templates.AddRange(page.Select(id => templates[id]));
        if (ids.Count > size) response.NextPageToken = PageToken.Encode(page[^1].ToString());
        return response;
    }

    /// <summary>Refused while a campaign that has not finished uses it.</summary>
    public async Task DeleteAsync(string tenant, string templateId, CancellationToken ct)
    {
        var id = ParseId(templateId, "template_id");
        await using var scope = await db.BeginAsync(tenant, ct);
        var users = (await scope.Connection.QueryAsync<string>(new CommandDefinition("""
            SELECT c.name FROM campaigns c
            WHERE c.tenant_id = @tenant AND c.status IN ('draft', 'scheduled', 'running', 'paused')
              AND (c.template_id = @id OR EXISTS (SELECT 1 FROM jsonb_each_text(c.fallback_templates) f WHERE f.value = @text)
                   OR EXISTS (SELECT 1 FROM campaign_variants v WHERE v.tenant_id = @tenant AND v.campaign_id = c.campaign_id AND v.template_id = @id))
            ORDER BY c.name LIMIT 5
            """, new { tenant, id, text = id.ToString() }, scope.Transaction, cancellationToken: ct))).AsList();
        if (users.Count > 0) throw new FailedPreconditionException($"Template {id} is used by {string.Join(", ", users.Select(n => $"'{n}'"))}.");
        var deleted = await scope.Connection.ExecuteAsync(new CommandDefinition(
            "DELETE FROM templates WHERE tenant_id = @tenant AND template_id = @id", new { tenant, id }, scope.Transaction, cancellationToken: ct));
        if (deleted == 0) throw new NotFoundException($"Template {id} not found.");
        await scope.CommitAsync(ct);
    }

    public async Task<PreviewTemplateResponse> PreviewAsync(string tenant, PreviewTemplateRequest request, CancellationToken ct)
    {
        var v = new Validation();
        if (!Guid.TryParse(request.ContactId, out var contactId)) v.Add("contact_id", "is required: the contact whose data fills the template");
        if (request.Purpose is not ("" or "marketing" or "transactional")) v.Add("purpose", "must be marketing or transactional");
        if (request.TemplateId.Length == 0 && request.Template is null) v.Add("template_id", "name a saved template, or give one in template");
        v.ThrowIfInvalid();
        Template template;
        TemplateModel.Facts facts;
        CampaignSettings settings;
        await using (var scope = await db.BeginAsync(tenant, ct))
        {
            template = request.Template ?? await GetAsync(scope, tenant, ParseId(request.TemplateId, "template_id"), ct);
            facts = (await TemplateModel.LoadAsync(scope, tenant, [contactId], ct)).GetValueOrDefault(contactId) ?? TemplateModel.Empty(contactId);
            settings = await CampaignSettingsStore.GetAsync(scope, tenant, ct);
        }
        var compiled = CompiledTemplate.Compile(template, "template", v);
        v.ThrowIfInvalid();
        var (locale, parts) = compiled!.Pick(request.Locale.Length > 0 ? request.Locale : facts.Locale, settings.DefaultLocale);
        var model = TemplateModel.Build(facts, new TemplateModel.CampaignInfo(Guid.Empty, "", request.CampaignData));
        RenderedMessage rendered;
        try
        {
            rendered = await CompiledTemplate.RenderAsync(compiled.Channel, parts, model);
        }
        catch (TemplateRenderException e)
        {
            throw new InvalidArgumentException("template", e.Message);
        }
        var response = new PreviewTemplateResponse { Locale = locale, Rendered = rendered };
        if (compiled.Channel == "sms") response.Sms = await SmsPreviewAsync(tenant, rendered.SmsText, request.Purpose is "" or "marketing", ct);
        return response;
    }

    /// <summary>
    /// What Delivery will send: marketing SMS under Korean rules get "(광고)", the sender and the free opt-out
    /// line (Delivery's own AdvertisingForm and SmsSegments, compiled into this service), read from Delivery's
    /// sender profile. Without a Delivery to ask, the text is shown without the form.
    /// </summary>
    private async Task<SmsPreview> SmsPreviewAsync(string tenant, string text, bool marketing, CancellationToken ct)
    {
        var preview = new SmsPreview { Text = text };
        if (marketing && peers.Delivery is { } delivery && peers.Identity.IsConfigured)
        {
            try
            {
                var profile = await delivery.GetSenderProfileAsync(new Crm.Delivery.V1.GetSenderProfileRequest(), peers.Identity.For(tenant, ct, Scope.DeliveryRead));
                if (profile.Jurisdiction == "KR" && profile.SenderName.Length > 0 && profile.OptOutNumber.Length > 0)
                {
                    preview.Text = AdvertisingForm.KoreanSmsAd(text, profile.SenderName, profile.OptOutNumber);
                    preview.AdvertisingForm = true;
                }
            }
            catch (RpcException e)
            {
                logger.LogWarning("Preview of {Tenant}: Delivery's sender profile unavailable ({Status}); the SMS is shown without the advertising form", tenant, e.StatusCode);
            }
        }
        var count = SmsSegments.Count(preview.Text);
        preview.Encoding = count.Encoding == SmsEncoding.Gsm7 ? "GSM-7" : "UCS-2";
        preview.Segments = count.Segments;
        preview.Characters = count.Characters;
        return preview;
    }

    /// <summary>Compiles the templates a run uses, once per run.</summary>
    public static async Task<Dictionary<Guid, CompiledTemplate>> CompileAsync(TenantTransaction scope, string tenant, Guid[] ids, CancellationToken ct)
    {
        var compiled = new Dictionary<Guid, CompiledTemplate>();
        foreach (var (id, t) in await LoadAsync(scope, tenant, ids, ct))
        {
            var v = new Validation();
            if (CompiledTemplate.Compile(t, "template", v) is { } c) compiled[id] = c;
        }
        return compiled;
    }

    private static void Validate(Template t)
    {
        var v = new Validation();
        if (t.Name.Trim().Length is 0 or > MaxNameLength) v.Add("template.name", $"is required (1 to {MaxNameLength} characters)");
        CompiledTemplate.Compile(t, "template", v);
        v.ThrowIfInvalid();
    }

    private static async Task WriteContentsAsync(TenantTransaction scope, string tenant, Guid id, Template t, CancellationToken ct) =>
        await scope.Connection.ExecuteAsync(new CommandDefinition("""
            INSERT INTO template_contents (tenant_id, template_id, locale, content)
            SELECT @tenant, @id, l, c::jsonb FROM unnest(@locales, @contents) AS x(l, c)
            """, new { tenant, id, locales = t.Contents.Select(c => c.Locale).ToArray(), contents = t.Contents.Select(c => ContentJson.Format(c)).ToArray() },
            scope.Transaction, cancellationToken: ct));

    private static Template ToProto(TemplateRow r) => new()
    {
        TemplateId = r.TemplateId.ToString(), Name = r.Name, Channel = r.Channel,
        CreateTime = Timestamp.FromDateTime(DateTime.SpecifyKind(r.CreatedAt, DateTimeKind.Utc)),
        UpdateTime = Timestamp.FromDateTime(DateTime.SpecifyKind(r.UpdatedAt, DateTimeKind.Utc)),
    };

    public static Guid ParseId(string value, string field) =>
        Guid.TryParse(value, out var id) ? id : throw new InvalidArgumentException(field, "is not a UUID");
}

public static class TemplatesRegistration
{
    public static IServiceCollection AddTemplates(this IServiceCollection services)
    {
        services.AddSingleton<TemplateEngine>();
        return services;
    }
}
