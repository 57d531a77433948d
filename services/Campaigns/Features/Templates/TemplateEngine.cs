namespace Crm.Campaigns.Features.Templates;

/// <summary>Templates (Fluid): save with parse errors by line and column, render per channel and locale, preview. Owner: campaigns-core.</summary>
public sealed class TemplateEngine
{
}

public static class TemplatesRegistration
{
    public static IServiceCollection AddTemplates(this IServiceCollection services)
    {
        services.AddSingleton<TemplateEngine>();
        return services;
    }
}
