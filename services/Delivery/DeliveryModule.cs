using Crm.BuildingBlocks.Data;
using Crm.BuildingBlocks.Hosting;
using Crm.BuildingBlocks.Messaging;
using Crm.BuildingBlocks.Tenancy;

namespace Crm.Delivery;

/// <summary>The one place the Delivery service wires its dependencies.</summary>
public static class DeliveryModule
{
    public const string ServiceName = "crm-delivery";

    /// <param name="configure">Lets tests and tools override configuration and services before the app is built.</param>
    public static WebApplication Build(string[] args, Action<WebApplicationBuilder>? configure = null)
    {
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = args, ContentRootPath = AppContext.BaseDirectory });
        configure?.Invoke(builder);
        builder.AddServiceDefaults(ServiceName);

        var services = builder.Services;
        services.AddPostgres(builder.Configuration, new MigrationSource("delivery", typeof(DeliveryModule).Assembly));
        services.AddCrmMessaging(builder.Configuration);
        services.AddCrmGrpc(builder.Configuration);

        var app = builder.Build();
        app.MapServiceDefaults();
        return app;
    }
}
