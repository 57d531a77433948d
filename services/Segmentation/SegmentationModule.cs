using Crm.BuildingBlocks.Data;
using Crm.BuildingBlocks.Hosting;
using Crm.BuildingBlocks.Messaging;
using Crm.BuildingBlocks.Tenancy;
using Crm.Segmentation.Features;
using Crm.Segmentation.Features.Backfill;
using Crm.Segmentation.Features.Leads;
using Crm.Segmentation.Features.Membership;
using Crm.Segmentation.Features.Projections;
using Crm.Segmentation.Features.Rfm;
using Crm.Segmentation.Features.Segments;
using Crm.Segmentation.Features.Tiers;
using MassTransit;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;

namespace Crm.Segmentation;

/// <summary>The one place the Segmentation service wires its dependencies.</summary>
public static class SegmentationModule
{
    public const string ServiceName = "crm-segmentation";

    /// <param name="configure">Lets tests and tools override configuration and services before the app is built.</param>
    public static WebApplication Build(string[] args, Action<WebApplicationBuilder>? configure = null)
    {
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = args, ContentRootPath = AppContext.BaseDirectory });
        configure?.Invoke(builder);
        builder.AddServiceDefaults(ServiceName);

        var services = builder.Services;
        var configuration = builder.Configuration;
        services.AddOptions<SegmentationOptions>().Bind(configuration.GetSection(SegmentationOptions.Section))
            .Validate(o => o.RefreshInterval > TimeSpan.Zero, "Segmentation:RefreshInterval must be positive")
            .Validate(o => o.RefreshBatchSize is >= 1 and <= 100_000, "Segmentation:RefreshBatchSize must be 1 to 100000")
            .ValidateOnStart();
        services.AddSingleton(sp => sp.GetRequiredService<IOptions<SegmentationOptions>>().Value);
        services.TryAddSingleton(TimeProvider.System);

        services.AddPostgres(configuration, new MigrationSource("segmentation", typeof(SegmentationModule).Assembly));
        services.AddMigrationsOnStart(); // before the outbox relay and the refresh touch the tables
        // Queues are prefixed: Delivery projects some of the same events, and each service needs every copy.
        services.AddCrmMessaging(configuration, bus =>
        {
            bus.AddConsumer<ContactUpsertedConsumer, ProjectionConsumerDefinition<ContactUpsertedConsumer>>();
            bus.AddConsumer<ConsentChangedConsumer, ProjectionConsumerDefinition<ConsentChangedConsumer>>();
            bus.AddConsumer<ContactErasedConsumer, ProjectionConsumerDefinition<ContactErasedConsumer>>();
            bus.AddConsumer<TransactionsRecordedConsumer, ProjectionConsumerDefinition<TransactionsRecordedConsumer>>();
            bus.AddConsumer<EngagementRecordedConsumer, ProjectionConsumerDefinition<EngagementRecordedConsumer>>();
            bus.AddConsumer<MessagesSentConsumer, ProjectionConsumerDefinition<MessagesSentConsumer>>();
            bus.AddConsumer<MessagesSuppressedConsumer, ProjectionConsumerDefinition<MessagesSuppressedConsumer>>();
            bus.AddConsumer<MessagesFailedConsumer, ProjectionConsumerDefinition<MessagesFailedConsumer>>();
            bus.AddConsumer<ChannelUnreachableConsumer, ProjectionConsumerDefinition<ChannelUnreachableConsumer>>();
        }, endpointPrefix: "segmentation");
        services.AddCrmGrpc(configuration);

        services.AddSegments(configuration);
        services.AddRfm(configuration);
        services.AddLeadScoring(configuration);
        services.AddTiers(configuration);
        services.AddBackfill(configuration);
        services.AddSingleton<ContactRefresh>();
        services.AddHostedService(sp => sp.GetRequiredService<ContactRefresh>());

        var app = builder.Build();
        app.MapServiceDefaults();
        app.MapGrpcService<SegmentationGrpcService>();
        return app;
    }
}
