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
        services.AddOptions<Features.Suppressions.SuppressionOptions>().Bind(builder.Configuration.GetSection(Features.Suppressions.SuppressionOptions.Section))
            .Validate(o => Features.Suppressions.SuppressionOptions.Problem(o) is null, "Contacts:SuppressionKey must be the base64 of 32 to 64 random bytes")
            .ValidateOnStart();
        services.AddSingleton(sp => new Features.Suppressions.SuppressionKey(
            sp.GetRequiredService<Microsoft.Extensions.Options.IOptions<Features.Suppressions.SuppressionOptions>>().Value));
        services.AddHostedService<Features.Suppressions.SuppressionKeyMigration>();
        services.AddCrmMessaging(builder.Configuration, bus =>
        {
            bus.AddConsumer<Features.Channels.ChannelUnreachableConsumer, Features.Channels.ChannelUnreachableConsumerDefinition>();
            bus.AddConsumer<Features.Consent.SmsReplyConsumer, Features.Consent.SmsReplyConsumerDefinition>();
            bus.AddConsumer<Features.Consent.UnsubscribeConsumer, Features.Consent.UnsubscribeConsumerDefinition>();
            bus.AddConsumer<Features.Engagement.EngagementObservedConsumer, Features.Engagement.EngagementObservedConsumerDefinition>();
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
