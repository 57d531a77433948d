using Crm.BuildingBlocks.Data;
using Crm.BuildingBlocks.Hosting;
using Crm.BuildingBlocks.Messaging;
using Crm.BuildingBlocks.Tenancy;
using Crm.Contacts.Features;
using Crm.Contacts.Features.Workspaces;
using MassTransit;

namespace Crm.Contacts;

/// <summary>The one place the Contacts service wires its dependencies.</summary>
public static class ContactsModule
{
    public const string ServiceName = "crm-contacts";

    /// <param name="configure">Lets tests and tools override configuration before the app is built.</param>
    public static WebApplication Build(string[] args, Action<WebApplicationBuilder>? configure = null)
    {
        // appsettings.json sits beside the binary, wherever the process is started from.
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = args, ContentRootPath = AppContext.BaseDirectory });
        configure?.Invoke(builder);
        builder.AddServiceDefaults(ServiceName);

        var services = builder.Services;
        services.AddPostgres(builder.Configuration, new MigrationSource("contacts", typeof(ContactsModule).Assembly));
        services.AddMigrationsOnStart(); // before anything that touches the tables, such as the outbox relay
        services.AddCrmMessaging(builder.Configuration, bus =>
        {
            bus.AddConsumer<Features.Channels.ChannelUnreachableConsumer, Features.Channels.ChannelUnreachableConsumerDefinition>();
            bus.AddConsumer<Features.Consent.SmsReplyConsumer, Features.Consent.SmsReplyConsumerDefinition>();
        });
        services.AddCrmGrpc(builder.Configuration);
        services.AddSingleton<Workspaces>();
        services.AddSingleton<Features.Workspaces.ApiKeys>();
        services.AddSingleton<Features.Imports.ImportSlots>();
        services.AddSingleton<Features.Imports.TableStatistics>();
        services.AddHostedService(sp => sp.GetRequiredService<Features.Imports.TableStatistics>());

        var app = builder.Build();
        app.MapServiceDefaults();
        app.MapGrpcService<ContactsGrpcService>();
        app.MapGrpcService<WorkspaceGrpcService>();
        return app;
    }
}
