using Crm.BuildingBlocks.Data;
using Crm.BuildingBlocks.Tenancy;
using Crm.Delivery.Channels.Email;
using Crm.Delivery.Features.Engagement;
using Crm.Delivery.Features.Webhooks;

namespace Crm.Delivery.Features.Tracking;

/// <summary>
/// GET /t/o/{token}: the open pixel (a 1×1 GIF); GET /t/c/{token}: a click, answered with a 302 to the URL the
/// token signed and nothing else. A token that does not verify is 404 and records nothing. An open is recorded
/// once per message (a machine open once more, apart); a click once per message and link.
/// </summary>
public static class TrackingEndpoints
{
    private static readonly byte[] Pixel = Convert.FromBase64String("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7");

    public static WebApplication MapTracking(this WebApplication app)
    {
        app.MapGet("/t/o/{token}", OpenAsync);
        app.MapGet("/t/c/{token}", ClickAsync);
        return app;
    }

    private static async Task<IResult> OpenAsync(string token, HttpContext http, TrackingLinks links, TenantDb db, DeliveryOptions options,
        TimeProvider clock, ILogger<TrackingLinks> logger)
    {
        if (links.Tokens?.Read(token, TrackingTokenKind.Open) is not { } t || !TenantIds.IsValid(t.Tenant)) return Results.NotFound();
        NoStore(http.Response);
        await RecordAsync(db, clock, logger, t, (message, now) =>
        {
            var machine = MachineOpens.IsMachine(http.Request.Headers.UserAgent, message.SentAt, now, options.Tracking.MachineOpenWindow);
            // Machine opens are kept apart: their own type and key, and no message.opened webhook.
            return machine
                ? new EngagementObservations.Observation(message, "machine_opened", $"machine_open:{message.MessageId}", now,
                    new Dictionary<string, string> { ["user_agent"] = http.Request.Headers.UserAgent.ToString() })
                : new EngagementObservations.Observation(message, "opened", $"open:{message.MessageId}", now, null, WebhookEvents.MessageOpened);
        });
        return Results.File(Pixel, "image/gif");
    }

    private static async Task<IResult> ClickAsync(string token, HttpContext http, TrackingLinks links, TenantDb db, TimeProvider clock,
        ILogger<TrackingLinks> logger)
    {
        if (links.Tokens?.Read(token, TrackingTokenKind.Click) is not { } t || !TenantIds.IsValid(t.Tenant)
            || !Uri.TryCreate(t.Url, UriKind.Absolute, out var target) || (target.Scheme != Uri.UriSchemeHttps && target.Scheme != Uri.UriSchemeHttp))
            return Results.NotFound();
        NoStore(http.Response);
        await RecordAsync(db, clock, logger, t, (message, now) => new EngagementObservations.Observation(
            message, "clicked", $"click:{message.MessageId}:{t.LinkIndex}", now,
            new Dictionary<string, string> { ["link_index"] = t.LinkIndex.ToString(System.Globalization.CultureInfo.InvariantCulture), ["url"] = t.Url },
            WebhookEvents.MessageClicked));
        return Results.Redirect(t.Url, permanent: false);
    }

    /// <summary>Records what the link saw. A failure to record never keeps a recipient from the page they clicked for.</summary>
    private static async Task RecordAsync(TenantDb db, TimeProvider clock, ILogger logger, TrackingToken t,
        Func<ObservedMessage, DateTimeOffset, EngagementObservations.Observation> observe)
    {
        try
        {
            var now = clock.GetUtcNow();
            await using var scope = await db.BeginAsync(t.Tenant, CancellationToken.None);
            var (conn, tx) = scope;
            if (await EngagementObservations.FindAsync(conn, tx, t.Tenant, t.MessageId) is not { } message) return;
            await EngagementObservations.RecordAsync(conn, tx, t.Tenant, [observe(message, now)], now);
            await tx.CommitAsync(CancellationToken.None);
        }
        catch (Exception ex) when (ex is Npgsql.NpgsqlException or TimeoutException)
        {
            logger.LogWarning(ex, "A {Kind} of message {MessageId} could not be recorded", t.Kind, t.MessageId);
        }
    }

    private static void NoStore(HttpResponse response)
    {
        response.Headers.CacheControl = "no-store, max-age=0";
        response.Headers["Referrer-Policy"] = "no-referrer";
    }
}
