using Crm.BuildingBlocks.Data;
using Crm.Delivery.Features.Engagement;
using Crm.BuildingBlocks.Outbox;
using Crm.Contracts.Delivery;
using Crm.Delivery.Features.Webhooks;
using Crm.Delivery.Security;
using Dapper;
using Npgsql;

namespace Crm.Delivery.Channels.Email;

/// <summary>What an email provider reported about a message it took: delivered, bounced (Permanent: a hard bounce) or complained.</summary>
public sealed record EmailFeedbackReport(string Kind, bool Permanent, string Reason, DateTimeOffset At, string Source)
{
    public const string Delivered = "delivered";
    public const string Bounced = "bounced";
    public const string Complained = "complained";
}

/// <summary>
/// Email bounces and complaints, from Amazon SES through SNS (<see cref="SnsNotifications"/>) or any provider through
/// the generic signed webhook (<see cref="EmailFeedbackWebhook"/>), applied the same way: an engagement event once per
/// message and kind (a repeated or replayed report changes nothing), a delivered message moved to delivered, and a
/// hard bounce or a complaint marks the address unreachable — here at once, in Contacts through ChannelUnreachable.
/// </summary>
public static class EmailFeedback
{
    public static WebApplication MapEmailFeedback(this WebApplication app)
    {
        app.MapPost(SnsNotifications.Path, SnsNotifications.HandleAsync).DisableAntiforgery();
        app.MapPost(EmailFeedbackWebhook.Path, EmailFeedbackWebhook.HandleAsync).DisableAntiforgery();
        return app;
    }

    public sealed class Settings
    {
        public string[] SnsTopicArns { get; init; } = [];
        public byte[]? WebhookSecret { get; init; }
    }

    public static Task<Settings?> SettingsAsync(NpgsqlConnection conn, NpgsqlTransaction tx, string tenant) =>
        conn.QuerySingleOrDefaultAsync<Settings?>(
            "SELECT sns_topic_arns AS SnsTopicArns, webhook_secret AS WebhookSecret FROM email_feedback_settings WHERE tenant_id = @tenant",
            new { tenant }, tx);

    public static string SecretAssociatedData(string tenant) => $"{tenant}/email-feedback";

    /// <returns>Whether the report was new (false: a repeat, nothing changed).</returns>
    public static async Task<bool> ApplyAsync(NpgsqlConnection conn, NpgsqlTransaction tx, string tenant, ObservedMessage message,
        EmailFeedbackReport report, DateTimeOffset now)
    {
        var (key, webhook) = report.Kind switch
        {
            EmailFeedbackReport.Delivered => ($"delivered:{message.MessageId}", WebhookEvents.MessageDelivered),
            EmailFeedbackReport.Bounced => ($"bounce:{message.MessageId}", (string?)null),
            _ => ($"complaint:{message.MessageId}", null),
        };
        var properties = new Dictionary<string, string> { ["source"] = report.Source };
        if (report.Kind == EmailFeedbackReport.Bounced) properties["bounce_type"] = report.Permanent ? "hard" : "soft";
        if (report.Reason.Length > 0) properties["reason"] = Channels.ProviderText.Bound(report.Reason);
        var fresh = await EngagementObservations.RecordAsync(conn, tx, tenant,
            [new EngagementObservations.Observation(message, report.Kind, key, report.At, properties, webhook)], now);
        if (fresh.Count == 0) return false;

        var hard = report.Kind == EmailFeedbackReport.Complained || (report.Kind == EmailFeedbackReport.Bounced && report.Permanent);
        if (report.Kind == EmailFeedbackReport.Delivered)
            await MoveAsync(conn, tx, tenant, message.MessageId, "delivered", "", now);
        else if (report.Kind == EmailFeedbackReport.Bounced && report.Permanent)
            await MoveAsync(conn, tx, tenant, message.MessageId, "failed", Channels.ProviderText.Bound($"bounced: {report.Reason}"), now);
        if (hard)
        {
            var reason = Channels.ProviderText.Bound(report.Kind == EmailFeedbackReport.Complained ? $"complaint: {report.Reason}" : $"hard bounce: {report.Reason}");
            await conn.ExecuteAsync("UPDATE contact_channels SET email_unreachable = true WHERE tenant_id = @tenant AND contact_id = @ContactId",
                new { tenant, message.ContactId }, tx);
            await Outbox.EnqueueAsync(conn, tx, new ChannelUnreachable(tenant, message.ContactId, "email", reason, report.At));
        }
        return true;
    }

    /// <summary>A sent message moves on (delivered, or failed by a bounce); receipts never move a message back.</summary>
    private static Task MoveAsync(NpgsqlConnection conn, NpgsqlTransaction tx, string tenant, Guid messageId, string next, string reason, DateTimeOffset now) =>
        conn.ExecuteAsync("""
            WITH m AS (
                UPDATE messages SET status = @next, reason = @reason, updated_at = @now
                WHERE tenant_id = @tenant AND message_id = @messageId AND (status = 'sent' OR (status = 'delivered' AND @next = 'failed'))
                RETURNING tenant_id, message_id)
            INSERT INTO message_events (tenant_id, message_id, status, reason, at) SELECT tenant_id, message_id, @next, @reason, @now FROM m
            """, new { tenant, messageId, next, reason, now = now.UtcDateTime }, tx);

    /// <summary>The secret of the tenant's generic webhook, opened; null when it has none.</summary>
    public static string? OpenSecret(SecretBox secrets, string tenant, Settings? settings) =>
        settings?.WebhookSecret is { } sealedSecret ? secrets.Open(sealedSecret, SecretAssociatedData(tenant)) : null;
}
