using System.Globalization;
using System.Net;
using Crm.BuildingBlocks.Data;
using Crm.BuildingBlocks.Outbox;
using Crm.BuildingBlocks.Tenancy;
using Crm.Contracts.Delivery;
using Crm.Delivery.Channels.Email;
using Crm.Delivery.Features.Engagement;
using Crm.Delivery.Features.Tracking;
using Crm.Delivery.Features.Webhooks;
using Dapper;

namespace Crm.Delivery.Features.Unsubscribe;

/// <summary>
/// The platform's unsubscribe link, /u/{token} (RFC 8058): a POST whose body is <c>List-Unsubscribe=One-Click</c>
/// (form-urlencoded or multipart) unsubscribes at once, without a page, a login, a cookie or a redirect; a GET
/// only shows a confirmation page (Korean or English by the contact's locale) whose button makes that POST — a
/// link scanner following the URL unsubscribes nobody. The token is signed; one that does not verify is 404.
///
/// Unsubscribing withdraws the contact's marketing consent on the message's channel: here at once (the next
/// marketing message is suppressed by this service's projection, even before Contacts answers), and in Contacts
/// through UnsubscribeRequested (source unsubscribe_link, the request as evidence), which announces it to every
/// service as ConsentChanged. It is also an engagement event and a message.unsubscribed webhook, once per message.
/// </summary>
public static class OneClickUnsubscribe
{
    public const string FormKey = "List-Unsubscribe";
    public const string FormValue = "One-Click";

    public static WebApplication MapUnsubscribe(this WebApplication app)
    {
        app.MapGet("/u/{token}", PageAsync);
        // No antiforgery token: RFC 8058's POST comes from a mailbox provider with no context at all.
        app.MapPost("/u/{token}", UnsubscribeAsync).DisableAntiforgery();
        return app;
    }

    private static async Task<IResult> PageAsync(string token, HttpContext http, TrackingLinks links, TenantDb db, CancellationToken ct)
    {
        if (Read(links, token) is not { } t) return Results.NotFound();
        await using var scope = await db.BeginAsync(t.Tenant, ct);
        var locale = await scope.Connection.QuerySingleOrDefaultAsync<string?>("""
            SELECT c.locale FROM messages m JOIN contact_channels c ON c.tenant_id = m.tenant_id AND c.contact_id = m.contact_id
            WHERE m.tenant_id = @tenant AND m.message_id = @id
            """, new { tenant = t.Tenant, id = t.MessageId }, scope.Transaction);
        await scope.CommitAsync(ct);
        var text = Texts.For(locale);
        // The button posts the one-click body to this same URL (relative: the page may be served through the gateway).
        return Page(http, text, $"""
            <p>{text.Question}</p>
            <form method="post" action="{WebUtility.HtmlEncode(token)}">
              <input type="hidden" name="{FormKey}" value="{FormValue}">
              <input type="hidden" name="via" value="page">
              <button type="submit">{text.Button}</button>
            </form>
            """);
    }

    private static async Task<IResult> UnsubscribeAsync(string token, HttpContext http, TrackingLinks links, TenantDb db, TimeProvider clock,
        CancellationToken ct)
    {
        if (Read(links, token) is not { } t) return Results.NotFound();
        var request = http.Request;
        if (!request.HasFormContentType) return Results.BadRequest($"the body must be the form {FormKey}={FormValue} (RFC 8058)");
        IFormCollection form;
        try
        {
            form = await request.ReadFormAsync(ct);
        }
        catch (InvalidDataException)
        {
            return Results.BadRequest($"the body must be the form {FormKey}={FormValue} (RFC 8058)");
        }
        if (form[FormKey].ToString() != FormValue) return Results.BadRequest($"the body must be the form {FormKey}={FormValue} (RFC 8058)");

        var now = clock.GetUtcNow();
        var via = form["via"].ToString() == "page" ? "confirmation page" : "one-click";
        var remote = http.Connection.RemoteIpAddress?.ToString() ?? "unknown";
        var forwarded = request.Headers["X-Forwarded-For"].ToString();
        var evidence = string.Create(CultureInfo.InvariantCulture,
            $"unsubscribe link of message {t.MessageId:N} ({via} POST) at {now.UtcDateTime:O} from {(forwarded.Length > 0 ? $"{forwarded} via {remote}" : remote)}, user agent \"{request.Headers.UserAgent}\"");
        string? locale;
        await using (var scope = await db.BeginAsync(t.Tenant, ct))
        {
            var (conn, tx) = scope;
            if (await EngagementObservations.FindAsync(conn, tx, t.Tenant, t.MessageId) is not { } message) return Results.NotFound();
            var fresh = await EngagementObservations.RecordAsync(conn, tx, t.Tenant, [new EngagementObservations.Observation(
                message, "unsubscribed", $"unsubscribe:{message.MessageId}", now, new Dictionary<string, string> { ["via"] = via },
                WebhookEvents.MessageUnsubscribed)], now);
            if (fresh.Count > 0)
            {
                // Stop at once here; Contacts records the withdrawal (with the evidence) and tells everyone.
                await conn.ExecuteAsync("""
                    INSERT INTO contact_consents (tenant_id, contact_id, channel, purpose, status, changed_at)
                    VALUES (@tenant, @ContactId, @Channel, 'marketing', 'opted_out', @now)
                    ON CONFLICT (tenant_id, contact_id, channel, purpose) DO UPDATE SET status = excluded.status, changed_at = excluded.changed_at
                    WHERE contact_consents.changed_at <= excluded.changed_at
                    """, new { tenant = t.Tenant, message.ContactId, message.Channel, now = now.UtcDateTime }, tx);
                await Outbox.EnqueueAsync(conn, tx, new UnsubscribeRequested(t.Tenant, message.ContactId, message.Channel, message.MessageId,
                    message.CampaignId, now, evidence));
            }
            locale = await conn.QuerySingleOrDefaultAsync<string?>("SELECT locale FROM contact_channels WHERE tenant_id = @tenant AND contact_id = @ContactId",
                new { tenant = t.Tenant, message.ContactId }, tx);
            await tx.CommitAsync(ct);
        }
        // Answered here, never with a redirect (RFC 8058 §3.1).
        var text = Texts.For(locale);
        return Page(http, text, $"<p>{text.Done}</p>");
    }

    private static TrackingToken? Read(TrackingLinks links, string token) =>
        links.Tokens?.Read(token, TrackingTokenKind.Unsubscribe) is { } t && TenantIds.IsValid(t.Tenant) ? t : null;

    private static IResult Page(HttpContext http, Texts text, string body)
    {
        http.Response.Headers.CacheControl = "no-store";
        http.Response.Headers["Referrer-Policy"] = "no-referrer";
        http.Response.Headers["X-Robots-Tag"] = "noindex";
        return Results.Content($"""
            <!doctype html>
            <html lang="{text.Lang}"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
            <title>{text.Title}</title></head>
            <body style="font-family:sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem">
            <h1 style="font-size:1.4rem">{text.Title}</h1>
            {body}
            </body></html>
            """, "text/html; charset=utf-8");
    }

    private sealed record Texts(string Lang, string Title, string Question, string Button, string Done)
    {
        private static readonly Texts Korean = new("ko", "수신거부", "이 주소로 광고성 정보를 더 이상 받지 않으시겠습니까?", "수신거부", "수신거부가 완료되었습니다. 이제 광고성 정보를 보내 드리지 않습니다.");
        private static readonly Texts English = new("en", "Unsubscribe", "Stop receiving marketing messages at this address?", "Unsubscribe", "You are unsubscribed. You will receive no more marketing messages here.");

        /// <summary>Korean for a Korean-speaking contact (ko, ko-KR) and when the locale is unknown (the platform's home market); English otherwise.</summary>
        public static Texts For(string? locale) =>
            locale is null || locale.Length == 0 || locale.StartsWith("ko", StringComparison.OrdinalIgnoreCase) ? Korean : English;
    }
}
