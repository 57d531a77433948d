using Crm.BuildingBlocks.Data;
using Crm.BuildingBlocks.Hosting;
using Crm.BuildingBlocks.Messaging;
using Crm.BuildingBlocks.Tenancy;
using Crm.Campaigns.Features;
using Crm.Campaigns.Features.Audience;
using Crm.Campaigns.Features.Campaigns;
using Crm.Campaigns.Features.Estimate;
using Crm.Campaigns.Features.Experiments;
using Crm.Campaigns.Features.Fanout;
using Crm.Campaigns.Features.Peers;
using Crm.Campaigns.Features.Progress;
using Crm.Campaigns.Features.Projections;
using Crm.Campaigns.Features.Reports;
using Crm.Campaigns.Features.Runs;
using Crm.Campaigns.Features.Schedule;
using Crm.Campaigns.Features.Settings;
using Crm.Campaigns.Features.Templates;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;

namespace Crm.Campaigns;

/// <summary>The one place the Campaigns service wires its dependencies; each folder registers its own parts.</summary>
public static class CampaignsModule
{
    public const string ServiceName = "crm-campaigns";

    /// <param name="configure">Lets tests and tools override configuration and services before the app is built.</param>
    public static WebApplication Build(string[] args, Action<WebApplicationBuilder>? configure = null)
    {
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = args, ContentRootPath = AppContext.BaseDirectory });
        configure?.Invoke(builder);
        builder.AddServiceDefaults(ServiceName);

        var services = builder.Services;
        var configuration = builder.Configuration;
        services.AddOptions<CampaignsOptions>().Bind(configuration.GetSection(CampaignsOptions.Section))
            .Validate(o => o.FanoutPageSize is >= 1 and <= 10_000, "Campaigns:FanoutPageSize must be 1 to 10000")
            .Validate(o => o.MessagesPerCommand is >= 1 and <= 1_000, "Campaigns:MessagesPerCommand must be 1 to 1000")
            .Validate(o => o.RunPollInterval > TimeSpan.Zero, "Campaigns:RunPollInterval must be positive")
            .Validate(o => o.RunLease >= TimeSpan.FromSeconds(1), "Campaigns:RunLease must be at least a second")
            .ValidateOnStart();
        services.AddSingleton(sp => sp.GetRequiredService<IOptions<CampaignsOptions>>().Value);
        services.TryAddSingleton(TimeProvider.System);

        services.AddPostgres(configuration, new MigrationSource("campaigns", typeof(CampaignsModule).Assembly));
        services.AddMigrationsOnStart(); // before the outbox relay and the run worker touch the tables
        // Queues are prefixed: Segmentation and Delivery project some of the same events, and each service needs every copy.
        services.AddCrmMessaging(configuration, bus =>
        {
            bus.AddProjectionConsumers();
            bus.AddProgressConsumers();
            bus.AddExperimentsConsumers();
        }, endpointPrefix: "campaigns");
        services.AddCrmGrpc(configuration);

        services.AddPeers();
        services.AddCampaignSettings();
        services.AddTemplates();
        services.AddCampaignDefinitions();
        services.AddAudience(configuration);
        services.AddFanout();
        services.AddRuns(configuration);
        services.AddEstimate();
        services.AddSchedules();
        services.AddExperiments();
        services.AddReports();

        var app = builder.Build();
        app.MapServiceDefaults();
        app.MapGrpcService<CampaignsGrpcService>();
        return app;
    }
}
