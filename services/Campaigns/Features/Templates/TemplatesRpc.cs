using Crm.BuildingBlocks.Tenancy;
using Crm.Campaigns.V1;
using Grpc.Core;

namespace Crm.Campaigns.Features;

// Templates: the calls, mapped onto Templates.TemplateEngine. Reads and previews need campaigns.read, changes campaigns.write.
public sealed partial class CampaignsGrpcService
{
    public override Task<Template> CreateTemplate(CreateTemplateRequest request, ServerCallContext context) =>
        _templates.CreateAsync(context.Caller(Scope.CampaignsWrite).TenantId, request.Template ?? new Template(), context.CancellationToken);

    public override Task<Template> UpdateTemplate(UpdateTemplateRequest request, ServerCallContext context) =>
        _templates.UpdateAsync(context.Caller(Scope.CampaignsWrite).TenantId, request.Template ?? new Template(), context.CancellationToken);

    public override Task<Template> GetTemplate(GetTemplateRequest request, ServerCallContext context) =>
        _templates.GetAsync(context.Caller(Scope.CampaignsRead).TenantId, request.TemplateId, context.CancellationToken);

    public override Task<ListTemplatesResponse> ListTemplates(ListTemplatesRequest request, ServerCallContext context) =>
        _templates.ListAsync(context.Caller(Scope.CampaignsRead).TenantId, request, context.CancellationToken);

    public override async Task<DeleteTemplateResponse> DeleteTemplate(DeleteTemplateRequest request, ServerCallContext context)
    {
        await _templates.DeleteAsync(context.Caller(Scope.CampaignsWrite).TenantId, request.TemplateId, context.CancellationToken);
        return new DeleteTemplateResponse();
    }

    public override Task<PreviewTemplateResponse> PreviewTemplate(PreviewTemplateRequest request, ServerCallContext context) =>
        _templates.PreviewAsync(context.Caller(Scope.CampaignsRead).TenantId, request, context.CancellationToken);
}
