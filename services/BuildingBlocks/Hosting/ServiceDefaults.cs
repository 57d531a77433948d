using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using OpenTelemetry;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;

namespace Crm.BuildingBlocks.Hosting;

/// <summary>What every service shares: structured logs, OpenTelemetry, health endpoints.</summary>
public static class ServiceDefaults
{
    public const string ReadyTag = "ready";

    public static WebApplicationBuilder AddServiceDefaults(this WebApplicationBuilder builder, string serviceName)
    {
        builder.Logging.ClearProviders();
        builder.Logging.AddJsonConsole(o =>
        {
            o.IncludeScopes = true;
            o.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ";
            o.UseUtcTimestamp = true;
        });

        // Metrics are on by default: /metrics (Prometheus text format) on the HTTP endpoint, and to the
        // OTLP endpoint when one is set. Metrics:Prometheus=false turns the scraping endpoint off.
        // Traces only with an OTLP endpoint (the standard OTEL_* variables): an activity per database
        // command and bus message costs CPU even when nothing exports it.
        var prometheus = PrometheusEnabled(builder.Configuration);
        var otlp = !string.IsNullOrWhiteSpace(builder.Configuration["OTEL_EXPORTER_OTLP_ENDPOINT"]);
        if (prometheus || otlp)
        {
            var telemetry = builder.Services.AddOpenTelemetry()
                .ConfigureResource(r => r.AddService(serviceName))
                .WithMetrics(m =>
                {
                    m.AddAspNetCoreInstrumentation()
                        .AddHttpClientInstrumentation()
                        .AddRuntimeInstrumentationIfPresent()
                        .AddMeter("Npgsql")
                        .AddMeter("MassTransit")
                        .AddMeter(CrmMeters.Name);
                    if (prometheus) m.AddPrometheusExporter();
                });
            if (otlp)
            {
                telemetry
                    .WithTracing(t => t
                        .AddAspNetCoreInstrumentation()
                        .AddHttpClientInstrumentation()
                        .AddSource("Npgsql")
                        .AddSource("MassTransit"))
                    .UseOtlpExporter();
            }
        }

        builder.Services.AddHealthChecks();
        return builder;
    }

    private static MeterProviderBuilder AddRuntimeInstrumentationIfPresent(this MeterProviderBuilder m) =>
        m.AddMeter("System.Runtime");

    private static bool PrometheusEnabled(IConfiguration configuration) => configuration.GetValue("Metrics:Prometheus", true);

    /// <summary>The health endpoints, gRPC reflection and /metrics (see <see cref="MapHealthAndMetrics"/>).</summary>
    public static WebApplication MapServiceDefaults(this WebApplication app)
    {
        app.MapHealthAndMetrics();
        app.MapGrpcReflectionService();
        return app;
    }

    /// <summary>
    /// /health/live says the process runs; /health/ready checks its servers (those registered with
    /// <see cref="ReadyTag"/>: PostgreSQL, RabbitMQ, Redis). /metrics serves the Prometheus scrape, without
    /// authentication like the health endpoints (the network policy decides who reaches it).
    /// </summary>
    public static WebApplication MapHealthAndMetrics(this WebApplication app)
    {
        app.MapHealthChecks("/health/live", new HealthCheckOptions { Predicate = _ => false });
        app.MapHealthChecks("/health/ready", new HealthCheckOptions { Predicate = c => c.Tags.Contains(ReadyTag) });
        if (PrometheusEnabled(app.Configuration)) app.MapPrometheusScrapingEndpoint();
        return app;
    }

    /// <summary>Runs the app, or with the argument <c>migrate</c> applies the database migrations and exits (the Helm hook Job).</summary>
    public static async Task<int> RunOrMigrateAsync(this WebApplication app, string[] args)
    {
        if (args.Contains("migrate"))
        {
            await app.Services.GetRequiredService<Data.Migrator>().MigrateAsync(app.Lifetime.ApplicationStopping);
            return 0;
        }
        await app.RunAsync();
        return 0;
    }
}

public static class CrmMeters
{
    public const string Name = "Crm.Platform";
}
