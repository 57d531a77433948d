using Crm.BuildingBlocks.Hosting;
using Crm.BuildingBlocks.Redis;
using Crm.BuildingBlocks.Tenancy;
using Crm.Gateway.Auth;

namespace Crm.Gateway;

/// <summary>
/// The platform's front door (YARP): REST (/v1/..., gRPC JSON transcoding in the services) and gRPC
/// (/crm.&lt;service&gt;.v1.*) routed to the service that owns them, as configured under
/// ReverseProxy. Callers bring an API key (<c>Authorization: Bearer crm_…</c>), which the gateway
/// exchanges for a short-lived signed identity token, rate-limited per key across replicas (Redis); an identity token
/// (apps that hold one) passes through, and the services verify it either way.
/// </summary>
public static class GatewayModule
{
    public const string ServiceName = "crm-gateway";

    public static WebApplication Build(string[] args, Action<WebApplicationBuilder>? configure = null)
    {
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = args, ContentRootPath = AppContext.BaseDirectory });
        configure?.Invoke(builder);
        builder.AddServiceDefaults(ServiceName);

        var services = builder.Services;
        services.AddIdentityTokenIssuer(builder.Configuration);
        services.AddSingleton(builder.Configuration.GetSection(GatewayOptions.Section).Get<GatewayOptions>() ?? new GatewayOptions());
        services.AddSingleton(TimeProvider.System);
        services.AddSingleton<ContactsChannel>();
        services.AddSingleton<ApiKeyExchange>();
        services.AddSingleton<ApiKeyUsage>();
        services.AddHostedService(sp => sp.GetRequiredService<ApiKeyUsage>());
        // Not part of readiness: without Redis a keyed request is refused with 503 (its rate cannot be
        // checked) while identity-token calls and health go on, and the replicas stay in the Service.
        services.AddCrmRedis(builder.Configuration, degradesWithoutRedis: true);
        services.AddSingleton<KeyRateLimits>();
        services.AddReverseProxy().LoadFromConfig(builder.Configuration.GetSection("ReverseProxy"));

        var app = builder.Build();
        app.UseMiddleware<ApiKeyMiddleware>();
        app.MapHealthAndMetrics();
        app.MapPost("/v1/imports/{kind:regex(^(contacts|transactions)$)}", Imports.ImportUpload.HandleAsync);
        app.MapReverseProxy();
        return app;
    }
}

public sealed class GatewayOptions
{
    public const string Section = "Gateway";

    /// <summary>Contacts' gRPC address, where API keys are resolved.</summary>
    public string ContactsGrpc { get; set; } = "http://127.0.0.1:5101";

    /// <summary>How long a resolved key is trusted before it is asked about again (so a revoked key stops within this).</summary>
    public TimeSpan KeyCacheFor { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Requests a second per API key, across all gateway replicas, after a burst of up to <see cref="Burst"/>.</summary>
    public int RequestsPerSecond { get; set; } = 50;

    public int Burst { get; set; } = 100;

    /// <summary>How often the keys used since are written to their last_used_at (one call to Contacts for all of them).</summary>
    public TimeSpan KeyUseFlushInterval { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Prepended to every Redis key (tests use one each).</summary>
    public string RedisKeyPrefix { get; set; } = "";
}
