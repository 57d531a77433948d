using System.Text.RegularExpressions;
using Crm.BuildingBlocks.Errors;
using Crm.BuildingBlocks.Tenancy;
using Crm.Delivery.Channels.Email;
using Crm.Delivery.Features.Engagement;
using Crm.Delivery.Features.Webhooks;
using Crm.Delivery.V1;
using EmailFeedback = Crm.Delivery.V1.EmailFeedback;
using Dapper;
using Grpc.Core;

namespace Crm.Delivery.Features;

public sealed partial class DeliveryGrpcService
{
    private static readonly Regex TopicArn = new(@"^arn:aws(-[a-z]+)*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?$", RegexOptions.CultureInvariant);

    public override async Task<EmailFeedback> SetEmailFeedback(SetEmailFeedbackRequest request, ServerCallContext context)
    {
        var caller = context.Caller(Scope.DeliveryAdmin);
        var v = new Validation();
        if (request.SnsTopicArns.Count > 20) v.Add("sns_topic_arns", "at most 20 topics");
        for (var i = 0; i < request.SnsTopicArns.Count; i++)
            if (!TopicArn.IsMatch(request.SnsTopicArns[i])) v.Add($"sns_topic_arns[{i}]", $"'{request.SnsTopicArns[i]}' is not an SNS topic ARN (arn:aws:sns:<region>:<account>:<topic>)");
        v.ThrowIfInvalid();

        var tenant = caller.TenantId;
        await using var scope = await _db.BeginAsync(tenant, context.CancellationToken);
        var (conn, tx) = scope;
        var existing = await Channels.Email.EmailFeedback.SettingsAsync(conn, tx, tenant);
        string? secret = null;
        if (request.RotateWebhookSecret || existing?.WebhookSecret is null) secret = WebhookSignature.NewSecret();
        await conn.ExecuteAsync("""
            INSERT INTO email_feedback_settings (tenant_id, sns_topic_arns, webhook_secret, updated_at)
            VALUES (@tenant, @arns, @sealed, @now)
            ON CONFLICT (tenant_id) DO UPDATE SET sns_topic_arns = excluded.sns_topic_arns,
                webhook_secret = coalesce(excluded.webhook_secret, email_feedback_settings.webhook_secret), updated_at = excluded.updated_at
            """, new
        {
            tenant, arns = request.SnsTopicArns.Distinct(StringComparer.Ordinal).ToArray(), now = _clock.GetUtcNow().UtcDateTime,
            @sealed = secret is null ? null : _secrets.Seal(secret, Channels.Email.EmailFeedback.SecretAssociatedData(tenant)),
        }, tx);
        await tx.CommitAsync(context.CancellationToken);
        var answer = new EmailFeedback { SnsTopicArns = { request.SnsTopicArns.Distinct(StringComparer.Ordinal) }, WebhookSecret = secret ?? "" };
        if (_options.PublicBaseUrl.Length > 0)
        {
            answer.SnsUrl = SnsNotifications.UrlFor(_options.PublicBaseUrl, tenant);
            answer.WebhookUrl = EmailFeedbackWebhook.UrlFor(_options.PublicBaseUrl, tenant);
        }
        return answer;
    }
}
