using Crm.BuildingBlocks.Data;
using Crm.Delivery.Channels.Sms;
using Crm.Delivery.Features.Policies;

namespace Crm.Delivery.Channels.Sms;

/// <summary>
/// Twilio's StatusCallback: POST /providers/twilio/{tenant}/{account}/status, signed with
/// X-Twilio-Signature (HMAC-SHA1 of the URL and the form, keyed with the account's auth token).
/// A delivered receipt moves a sent message to delivered; an undelivered or failed one to failed,
/// with Twilio's error code as the reason. Receipts are idempotent and never move a message back.
/// </summary>
public static class TwilioStatusCallbacks
{
    public const string Path = "/providers/twilio/{tenant}/{account}/status";

    public static string UrlFor(string publicBaseUrl, string tenant, string accountId) =>
        TwilioWebhooks.UrlFor(publicBaseUrl, tenant, accountId, "status");

    public static WebApplication MapTwilioStatusCallbacks(this WebApplication app)
    {
        app.MapPost(Path, HandleAsync).DisableAntiforgery();
        return app;
    }

    private static async Task<IResult> HandleAsync(string tenant, string account, HttpRequest request, TenantPolicies policies,
        TenantDb db, DeliveryOptions options, TimeProvider clock, CancellationToken ct)
    {
        var (form, refusal) = await TwilioWebhooks.ReadSignedAsync(tenant, account, "status", request, policies, options, ct);
        if (refusal is not null) return refusal;

        var sid = form!["MessageSid"].ToString();
        var status = form["MessageStatus"].ToString();
        var (next, reason) = status switch
        {
            "delivered" => ("delivered", ""),
            "undelivered" or "failed" => ("failed", $"Twilio {status}, error {form["ErrorCode"]}"),
            _ => ((string?)null, ""),
        };
        if (next is null || sid.Length == 0) return Results.NoContent(); // queued, sent, ...: nothing to record
        await ProviderReceipts.ApplyAsync(db, tenant, sid, next, reason, clock.GetUtcNow(), "twilio", ct);
        return Results.NoContent();
    }
}
