using Crm.BuildingBlocks.Data;
using Crm.BuildingBlocks.Hosting;
using Crm.BuildingBlocks.Messaging;
using Crm.BuildingBlocks.Net;
using Crm.BuildingBlocks.Redis;
using Crm.BuildingBlocks.Tenancy;
using Crm.Delivery.Channels;
using Crm.Delivery.Channels.Email;
using Crm.Delivery.Channels.Kakao;
using Crm.Delivery.Channels.Sms;
using Crm.Delivery.Features;
using Crm.Delivery.Features.Messages;
using Crm.Delivery.Features.Policies;
using Crm.Delivery.Features.Projections;
using Crm.Delivery.Features.Tracking;
using Crm.Delivery.Features.Unsubscribe;
using Crm.Delivery.Features.Webhooks;
using Crm.Delivery.Pipeline;
using Crm.Delivery.Security;
using MassTransit;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;

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
        var configuration = builder.Configuration;
        // Bound and checked at start-up: a missing key or a malformed setting stops the service, naming it.
        services.AddOptions<DeliveryOptions>().Bind(configuration.GetSection(DeliveryOptions.Section)).ValidateOnStart();
        services.AddSingleton<IValidateOptions<DeliveryOptions>, DeliveryOptionsValidator>();
        services.AddSingleton(sp => sp.GetRequiredService<IOptions<DeliveryOptions>>().Value);
        services.AddSingleton(sp => new SecretBox(sp.GetRequiredService<DeliveryOptions>().SecretKey));
        services.AddSingleton(sp => new OutboundGuard(sp.GetRequiredService<DeliveryOptions>().AllowPrivateProviderAddresses));
        services.TryAddSingleton(TimeProvider.System);

        services.AddPostgres(configuration, new MigrationSource("delivery", typeof(DeliveryModule).Assembly));
        services.AddMigrationsOnStart(); // before the outbox relay and the workers touch the tables
        services.AddCrmRedis(configuration);
        services.AddCrmMessaging(configuration, bus =>
        {
            bus.AddConsumer<DeliverMessageConsumer, DeliverMessageConsumerDefinition>();
            bus.AddConsumer<ContactUpsertedConsumer, ProjectionConsumerDefinition<ContactUpsertedConsumer>>();
            bus.AddConsumer<ConsentChangedConsumer, ProjectionConsumerDefinition<ConsentChangedConsumer>>();
            bus.AddConsumer<ContactErasedConsumer, ProjectionConsumerDefinition<ContactErasedConsumer>>();
        });
        services.AddCrmGrpc(configuration);

        services.AddSingleton(sp => new RetryPolicy(sp.GetRequiredService<DeliveryOptions>().Retry, time: sp.GetRequiredService<TimeProvider>()));
        services.AddHttpClient<ISmsSender, TwilioSmsSender>(c => c.Timeout = Timeout.InfiniteTimeSpan) // timeouts per attempt, in the sender
            .ConfigurePrimaryHttpMessageHandler(sp => sp.GetRequiredService<OutboundGuard>().CreateHttpHandler());
        services.AddSingleton<IEmailSender, SmtpEmailSender>();
        services.AddHttpClient<IKakaoSender, NhnKakaoSender>(c => c.Timeout = Timeout.InfiniteTimeSpan) // per attempt, in the sender
            .ConfigurePrimaryHttpMessageHandler(sp => sp.GetRequiredService<OutboundGuard>().CreateHttpHandler());
        // The channels: each one line (its folder holds the rest).
        services.AddChannel<EmailChannel>();
        services.AddChannel<SmsChannel>();
        services.AddChannel<KakaoChannel>();
        services.AddHttpClient(WebhookDispatcher.HttpClientName, c => c.Timeout = Timeout.InfiniteTimeSpan) // per attempt, in the dispatcher
            .ConfigurePrimaryHttpMessageHandler(sp => sp.GetRequiredService<OutboundGuard>().CreateHttpHandler());

        services.AddSingleton<TrackingLinks>();
        services.AddSingleton<EmailComposer>();
        services.AddHttpClient(SnsNotifications.HttpClientName, c => c.Timeout = TimeSpan.FromSeconds(10))
            .ConfigurePrimaryHttpMessageHandler(sp => sp.GetRequiredService<OutboundGuard>().CreateHttpHandler());
        services.AddSingleton<SnsMessageVerifier>();
        services.AddSingleton<TenantPolicies>();
        services.AddSingleton<FrequencyCaps>();
        services.AddSingleton<ProviderThrottle>();
        services.AddSingleton<MessageIntake>();
        services.AddSingleton<DeliveryPipeline>();
        services.AddSingleton<DeferredMessages>();
        services.AddHostedService(sp => sp.GetRequiredService<DeferredMessages>());
        services.AddSingleton<StrandedMessages>();
        services.AddHostedService(sp => sp.GetRequiredService<StrandedMessages>());
        services.AddSingleton(sp => ActivatorUtilities.CreateInstance<WebhookDispatcher>(sp,
            sp.GetRequiredService<IHttpClientFactory>().CreateClient(WebhookDispatcher.HttpClientName)));
        services.AddHostedService(sp => sp.GetRequiredService<WebhookDispatcher>());
        services.AddSingleton<WebhookRetention>();
        services.AddHostedService(sp => sp.GetRequiredService<WebhookRetention>());

        var app = builder.Build();
        app.MapServiceDefaults();
        app.MapGrpcService<DeliveryGrpcService>();
        app.MapChannelEndpoints();
        app.MapTracking();
        app.MapUnsubscribe();
        return app;
    }
}
