using Crm.BuildingBlocks.Data;
using Crm.BuildingBlocks.Outbox;
using Crm.Contracts.Delivery;
using Crm.Delivery.Channels.Sms;
using Crm.Delivery.Features.Policies;
using Npgsql;

namespace Crm.Delivery.Channels.Sms;

/// <summary>
/// Twilio's incoming-message webhook: POST /providers/twilio/{tenant}/{account}/incoming, signed
/// like the status callbacks. Every reply is announced (SmsReplyReceived) for Contacts; one that is
/// an opt-out keyword makes Contacts record the opt-out of marketing SMS, with the reply as the
/// evidence the law asks for. The answer is empty TwiML: the platform sends nothing back itself.
/// </summary>
public static class TwilioIncomingMessages
{
    public const string Path = "/providers/twilio/{tenant}/{account}/incoming";

    public static string UrlFor(string publicBaseUrl, string tenant, string accountId) =>
        TwilioWebhooks.UrlFor(publicBaseUrl, tenant, accountId, "incoming");

    public static WebApplication MapTwilioIncomingMessages(this WebApplication app)
    {
        app.MapPost(Path, HandleAsync).DisableAntiforgery();
        return app;
    }

    private static async Task<IResult> HandleAsync(string tenant, string account, HttpRequest request, TenantPolicies policies,
        TenantDb db, DeliveryOptions options, TimeProvider clock, CancellationToken ct)
    {
        var (form, refusal) = await TwilioWebhooks.ReadSignedAsync(tenant, account, "incoming", request, policies, options, ct);
        if (refusal is not null) return refusal;

        var from = form!["From"].ToString();
        var body = form["Body"].ToString();
        if (from.Length > 0)
        {
            var reply = new SmsReplyReceived(tenant, from, form["To"].ToString(), body, form["MessageSid"].ToString(),
                OptOutKeywords.IsOptOut(body), clock.GetUtcNow());
            await using var scope = await db.BeginAsync(tenant, ct);
            var (conn, tx) = scope;
            await Outbox.EnqueueAsync(conn, tx, reply);
            await tx.CommitAsync(ct);
        }
        return Results.Text("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response></Response>", "text/xml");
    }
}

/// <summary>
/// A reply that asks to stop: the whole message is one keyword, in any case, with spaces or a final
/// full stop around it. Twilio's standard English keywords, and the Korean ones customers type in
/// answer to "무료수신거부 080-…".
/// </summary>
public static class OptOutKeywords
{
    private static readonly HashSet<string> Keywords = new(StringComparer.OrdinalIgnoreCase)
    {
        "STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "REVOKE",
        "수신거부", "수신 거부", "거부", "수신중지", "수신 중지", "중지", "해지", "광고거부",
    };

    public static bool IsOptOut(string body) => Keywords.Contains(body.Trim().TrimEnd('.', '!', '。').Trim());
}
