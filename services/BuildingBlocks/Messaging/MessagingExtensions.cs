using Crm.BuildingBlocks.Outbox;
using MassTransit;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;

namespace Crm.BuildingBlocks.Messaging;

public static class MessagingExtensions
{
    /// <summary>
    /// MassTransit 8 on RabbitMQ (ConnectionStrings:RabbitMq, an amqp:// URI with the virtual host),
    /// kebab-case endpoints on durable quorum queues, publisher confirms, and the outbox relay.
    /// Retry policies are set per consumer, in its definition class.
    /// </summary>
    /// <param name="endpointPrefix">
    /// Prefixes the service's queue names (e.g. "segmentation" gives "segmentation-contact-upserted"), so that
    /// two services projecting the same event each get every copy instead of competing for one queue.
    /// </param>
    public static IServiceCollection AddCrmMessaging(this IServiceCollection services, IConfiguration configuration,
        Action<IBusRegistrationConfigurator>? configure = null, string? endpointPrefix = null)
    {
        var uri = configuration.GetConnectionString("RabbitMq");
        if (string.IsNullOrWhiteSpace(uri))
            throw new InvalidOperationException("ConnectionStrings:RabbitMq is not configured.");

        services.AddMassTransit(x =>
        {
            if (endpointPrefix is null) x.SetKebabCaseEndpointNameFormatter();
            else x.SetEndpointNameFormatter(new KebabCaseEndpointNameFormatter(endpointPrefix, false));
            // MassTransit 8.4+ reports anonymous usage to its vendor by default: a platform that holds
            // customers' data makes no calls it was not asked to make.
            x.ConfigureUsageTelemetryOptions(o => o.Enabled = false);
            configure?.Invoke(x);
            x.AddConfigureEndpointsCallback((_, _, cfg) =>
            {
                if (cfg is IRabbitMqReceiveEndpointConfigurator rabbit) rabbit.SetQuorumQueue();
            });
            x.UsingRabbitMq((context, cfg) =>
            {
                cfg.Host(new Uri(uri), h => h.PublisherConfirmation = true);
                cfg.ConfigureEndpoints(context);
            });
        });

        // Start-up completes once the bus is connected and every consumer's queue is bound: an event
        // published to us before that would reach an exchange with nothing bound to it, and be lost.
        services.AddOptions<MassTransitHostOptions>().Configure(o =>
        {
            o.WaitUntilStarted = true;
            o.StartTimeout = TimeSpan.FromSeconds(60);
        });

        services.AddOptions<OutboxOptions>().Bind(configuration.GetSection(OutboxOptions.Section))
            .Validate(o => o.BatchSize >= 1, "Outbox:BatchSize must be at least 1")
            .Validate(o => o.PollInterval > TimeSpan.Zero, "Outbox:PollInterval must be positive")
            .Validate(o => o.RetainFor > TimeSpan.Zero, "Outbox:RetainFor must be positive")
            .Validate(o => o.CleanupInterval > TimeSpan.Zero, "Outbox:CleanupInterval must be positive")
            .Validate(o => o.CleanupBatchSize >= 1, "Outbox:CleanupBatchSize must be at least 1")
            .ValidateOnStart();
        services.AddSingleton(sp => sp.GetRequiredService<Microsoft.Extensions.Options.IOptions<OutboxOptions>>().Value);
        services.AddHostedService<OutboxRelay>();
        services.AddSingleton<OutboxRetention>();
        services.AddHostedService(sp => sp.GetRequiredService<OutboxRetention>());
        return services;
    }
}
