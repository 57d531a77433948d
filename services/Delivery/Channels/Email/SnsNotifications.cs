using System.Globalization;
using System.Text.Json;
using Crm.BuildingBlocks.Data;
using Crm.Delivery.Features.Engagement;
using Crm.BuildingBlocks.Tenancy;

namespace Crm.Delivery.Channels.Email;

/// <summary>
/// Amazon SES bounce, complaint and delivery notifications through Amazon SNS: POST /providers/ses/{tenant}, the
/// HTTPS subscription of a topic the workspace named (SetEmailFeedback). Every message's signature is verified
/// (<see cref="SnsMessageVerifier"/>) and its topic must be one of the workspace's — anyone can make AWS sign
/// messages of their own topic. A SubscriptionConfirmation is confirmed by fetching its SubscribeURL (an SNS host
/// only). A notification names the message by the Message-Id the platform gave it.
/// </summary>
public static class SnsNotifications
{
    public const string Path = "/providers/ses/{tenant}";
    public const string HttpClientName = "sns";
    private const int MaxBody = 256 * 1024; // SNS messages are at most 256 KB

    public static string UrlFor(string publicBaseUrl, string tenant) => $"{publicBaseUrl.TrimEnd('/')}/providers/ses/{Uri.EscapeDataString(tenant)}";

    internal static async Task<IResult> HandleAsync(string tenant, HttpRequest request, TenantDb db, SnsMessageVerifier verifier,
        IHttpClientFactory http, TimeProvider clock, ILogger<SnsMessageVerifier> logger, CancellationToken ct)
    {
        if (!TenantIds.IsValid(tenant)) return Results.NotFound();
        if (request.ContentLength > MaxBody) return Results.StatusCode(StatusCodes.Status413PayloadTooLarge);
        using var reader = new StreamReader(request.Body);
        var body = await reader.ReadToEndAsync(ct);
        if (SnsMessage.Parse(body) is not { } m) return Results.BadRequest("not an SNS message");

        // The topic first: a message of a topic the workspace did not name costs no certificate fetch.
        EmailFeedback.Settings? settings;
        await using (var scope = await db.BeginAsync(tenant, ct))
        {
            settings = await EmailFeedback.SettingsAsync(scope.Connection, scope.Transaction, tenant);
            await scope.CommitAsync(ct);
        }
        if (settings is null || !settings.SnsTopicArns.Contains(m.TopicArn, StringComparer.Ordinal)) return Results.StatusCode(StatusCodes.Status403Forbidden);
        if (await verifier.VerifyAsync(m, ct) is { } problem)
        {
            logger.LogWarning("SNS message {MessageId} for {Tenant} refused: {Problem}", m.MessageId, tenant, problem);
            return Results.StatusCode(StatusCodes.Status403Forbidden);
        }

        switch (m.Type)
        {
            case "SubscriptionConfirmation":
                if (m.SubscribeUrl is null || !verifier.IsTrustedUrl(m.SubscribeUrl)) return Results.BadRequest("SubscribeURL is not on an SNS host");
                using (var client = http.CreateClient(HttpClientName))
                using (var confirmed = await client.GetAsync(new Uri(m.SubscribeUrl), ct))
                {
                    logger.LogInformation("SNS subscription of {Topic} for {Tenant} confirmed: {Status}", m.TopicArn, tenant, (int)confirmed.StatusCode);
                    return confirmed.IsSuccessStatusCode ? Results.Ok() : Results.StatusCode(StatusCodes.Status502BadGateway);
                }
            case "Notification":
                if (ReadSes(m.Message) is not { } ses) return Results.Ok(); // not an SES notification: nothing of ours
                var now = clock.GetUtcNow();
                await using (var scope = await db.BeginAsync(tenant, ct))
                {
                    var (conn, tx) = scope;
                    if (await EngagementObservations.FindByProviderIdAsync(conn, tx, tenant, ses.MessageId) is { Channel: "email" } message)
                        await EmailFeedback.ApplyAsync(conn, tx, tenant, message, ses.Report, now);
                    await tx.CommitAsync(ct);
                }
                return Results.Ok();
            default:
                return Results.Ok(); // UnsubscribeConfirmation: nothing to do
        }
    }

    /// <summary>An SES notification (notificationType) or event (eventType): Bounce, Complaint or Delivery, and the Message-Id of the mail.</summary>
    public static (string MessageId, EmailFeedbackReport Report)? ReadSes(string json)
    {
        try
        {
            using var doc = JsonDocument.Parse(json);
            var r = doc.RootElement;
            var kind = Str(r, "notificationType") ?? Str(r, "eventType");
            if (!r.TryGetProperty("mail", out var mail) || !mail.TryGetProperty("commonHeaders", out var headers)
                || Str(headers, "messageId") is not { } messageId)
                return null;
            messageId = messageId.Trim().TrimStart('<').TrimEnd('>');
            EmailFeedbackReport? report = kind switch
            {
                "Bounce" when r.TryGetProperty("bounce", out var b) => new EmailFeedbackReport(EmailFeedbackReport.Bounced,
                    Str(b, "bounceType") == "Permanent",
                    $"{Str(b, "bounceType")}/{Str(b, "bounceSubType")}" + (b.TryGetProperty("bouncedRecipients", out var rs) && rs.GetArrayLength() > 0
                        && Str(rs[0], "diagnosticCode") is { } code ? $": {code}" : ""),
                    Time(b), "ses"),
                "Complaint" when r.TryGetProperty("complaint", out var c) => new EmailFeedbackReport(EmailFeedbackReport.Complained, true,
                    Str(c, "complaintFeedbackType") ?? "complaint", Time(c), "ses"),
                "Delivery" when r.TryGetProperty("delivery", out var d) => new EmailFeedbackReport(EmailFeedbackReport.Delivered, false, "", Time(d), "ses"),
                _ => null,
            };
            return report is null ? null : (messageId, report);
        }
        catch (Exception ex) when (ex is JsonException or InvalidOperationException)
        {
            return null;
        }
    }

    private static string? Str(JsonElement e, string name) =>
        e.ValueKind == JsonValueKind.Object && e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;

    private static DateTimeOffset Time(JsonElement e) =>
        Str(e, "timestamp") is { } t && DateTimeOffset.TryParse(t, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var at) ? at : DateTimeOffset.UtcNow;
}
