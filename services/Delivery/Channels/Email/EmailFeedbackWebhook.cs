using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Crm.BuildingBlocks.Data;
using Crm.Delivery.Features.Engagement;
using Crm.BuildingBlocks.Tenancy;
using Crm.Delivery.Features.Webhooks;
using Crm.Delivery.Security;

namespace Crm.Delivery.Channels.Email;

/// <summary>
/// The generic email feedback webhook, for any provider or relay: POST /providers/email/{tenant}/events with a
/// JSON body signed the Standard Webhooks way (webhook-id, webhook-timestamp, webhook-signature: v1,&lt;base64
/// HMAC-SHA256 of "{id}.{timestamp}.{body}"&gt;) with the workspace's whsec_ secret (SetEmailFeedback). A timestamp
/// more than 5 minutes away is refused (a replay); a report already applied changes nothing.
/// <code>{"type": "bounce" | "complaint" | "delivered", "message_id": "&lt;platform message id&gt;" or "smtp_message_id": "&lt;Message-Id&gt;",
///  "bounce_type": "hard" | "soft", "reason": "550 5.1.1 user unknown", "occurred_at": "2026-03-01T09:00:00Z"}</code>
/// </summary>
public static class EmailFeedbackWebhook
{
    public const string Path = "/providers/email/{tenant}/events";
    private static readonly TimeSpan Tolerance = TimeSpan.FromMinutes(5);

    public static string UrlFor(string publicBaseUrl, string tenant) => $"{publicBaseUrl.TrimEnd('/')}/providers/email/{Uri.EscapeDataString(tenant)}/events";

    internal static async Task<IResult> HandleAsync(string tenant, HttpRequest request, TenantDb db, SecretBox secrets, TimeProvider clock, CancellationToken ct)
    {
        if (!TenantIds.IsValid(tenant)) return Results.NotFound();
        using var reader = new StreamReader(request.Body);
        var body = await reader.ReadToEndAsync(ct);
        var now = clock.GetUtcNow();
        await using var scope = await db.BeginAsync(tenant, ct);
        var (conn, tx) = scope;
        if (EmailFeedback.OpenSecret(secrets, tenant, await EmailFeedback.SettingsAsync(conn, tx, tenant)) is not { } secret) return Results.NotFound();
        if (!Verify(secret, request.Headers["webhook-id"].ToString(), request.Headers["webhook-timestamp"].ToString(),
                request.Headers["webhook-signature"].ToString(), body, now))
            return Results.StatusCode(StatusCodes.Status403Forbidden);
        if (Read(body) is not { } parsed) return Results.BadRequest(new { error = "invalid body", field = "type, message_id or smtp_message_id" });
        if (parsed.Problem is not null) return Results.BadRequest(new { error = parsed.Problem.Value.Message, field = parsed.Problem.Value.Field });

        var message = parsed.MessageId is { } id
            ? await EngagementObservations.FindAsync(conn, tx, tenant, id)
            : await EngagementObservations.FindByProviderIdAsync(conn, tx, tenant, parsed.SmtpMessageId!);
        if (message is not { Channel: "email" }) return Results.NotFound();
        await EmailFeedback.ApplyAsync(conn, tx, tenant, message, parsed.Report!, now);
        await tx.CommitAsync(ct);
        return Results.NoContent();
    }

    public static bool Verify(string secret, string id, string timestamp, string signatures, string body, DateTimeOffset now)
    {
        if (id.Length == 0 || !long.TryParse(timestamp, NumberStyles.None, CultureInfo.InvariantCulture, out var seconds)) return false;
        if ((now - DateTimeOffset.FromUnixTimeSeconds(Math.Clamp(seconds, 0, 253402300799))).Duration() > Tolerance) return false;
        var expected = Convert.FromBase64String(WebhookSignature.Sign(WebhookSignature.Key(secret), id, seconds, body)[3..]);
        foreach (var s in signatures.Split(' ', StringSplitOptions.RemoveEmptyEntries))
        {
            if (!s.StartsWith("v1,", StringComparison.Ordinal)) continue;
            var given = new byte[64];
            if (Convert.TryFromBase64String(s[3..], given, out var n) && CryptographicOperations.FixedTimeEquals(given.AsSpan(0, n), expected)) return true;
        }
        return false;
    }

    private sealed record Parsed(Guid? MessageId, string? SmtpMessageId, EmailFeedbackReport? Report, (string Field, string Message)? Problem = null);

    private static Parsed? Read(string body)
    {
        try
        {
            using var doc = JsonDocument.Parse(body);
            var r = doc.RootElement;
            if (r.ValueKind != JsonValueKind.Object) return null;
            string? S(string name) => r.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;
            var kind = S("type") switch
            {
                "bounce" => EmailFeedbackReport.Bounced, "complaint" => EmailFeedbackReport.Complained, "delivered" => EmailFeedbackReport.Delivered, _ => null,
            };
            if (kind is null) return new Parsed(null, null, null, ("type", "must be bounce, complaint or delivered"));
            Guid? messageId = Guid.TryParse(S("message_id"), out var g) ? g : null;
            var smtpId = S("smtp_message_id")?.Trim().TrimStart('<').TrimEnd('>');
            if (messageId is null && string.IsNullOrEmpty(smtpId)) return new Parsed(null, null, null, ("message_id", "message_id (the platform's) or smtp_message_id is required"));
            var bounceType = S("bounce_type");
            if (kind == EmailFeedbackReport.Bounced && bounceType is not ("hard" or "soft")) return new Parsed(null, null, null, ("bounce_type", "must be hard or soft"));
            var at = S("occurred_at") is { } t && DateTimeOffset.TryParse(t, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var parsedAt) ? parsedAt : DateTimeOffset.UtcNow;
            return new Parsed(messageId, smtpId, new EmailFeedbackReport(kind, bounceType == "hard", S("reason") ?? "", at, "webhook"));
        }
        catch (JsonException)
        {
            return null;
        }
    }
}
