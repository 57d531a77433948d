using System.Net;
using System.Text;
using System.Text.Json;
using Crm.Contracts.Delivery;
using Crm.Delivery.Channels.Email;
using Crm.Delivery.Features.Engagement;
using Crm.Delivery.Features.Webhooks;
using Crm.Delivery.Tests.Infrastructure;
using Crm.Delivery.V1;
using Crm.Fakes.Sns;

namespace Crm.Delivery.Tests;

/// <summary>Email bounces and complaints: Amazon SES through SNS (signatures verified) and the generic signed webhook.</summary>
[Collection(DeliveryCollection.Name)]
public sealed class EmailFeedbackTests(DeliveryFixture fx)
{
    private const string Topic = "arn:aws:sns:ap-northeast-2:123456789012:ses-feedback";

    private static string SesBounce(string messageId, string bounceType = "Permanent") => JsonSerializer.Serialize(new
    {
        notificationType = "Bounce",
        bounce = new
        {
            bounceType, bounceSubType = "General", timestamp = DateTimeOffset.UtcNow.ToString("O"),
            bouncedRecipients = new[] { new { emailAddress = "gone@example.kr", action = "failed", status = "5.1.1", diagnosticCode = "smtp; 550 5.1.1 user unknown" } },
        },
        mail = new { messageId = "0100018c-ses", destination = new[] { "gone@example.kr" }, commonHeaders = new { messageId = $"<{messageId}>", subject = "봄" } },
    });

    private async Task<(string Tenant, Message Message)> SentEmailAsync(string address)
    {
        var t = await WayBack.PlatformUnsubscribeWorkspaceAsync(fx);
        await fx.Client.SetEmailFeedbackAsync(new SetEmailFeedbackRequest { SnsTopicArns = { Topic } }, fx.As(t));
        var c = await fx.NewContactAsync(t, email: address, consents: WayBack.EmailMarketingIn);
        var m = await fx.Client.SendMessageAsync(WayBack.MarketingEmail(c, "feedback-1"), fx.As(t));
        Assert.Equal(MessageStatus.Sent, m.Status);
        return (t, m);
    }

    private Uri SnsEndpoint(string tenant) => new(SnsNotifications.UrlFor(fx.Host.HttpAddress.ToString(), tenant));

    [Fact]
    public async Task Should_mark_a_hard_bounced_address_unreachable_once_and_refuse_forged_and_replayed_notifications()
    {
        var (t, m) = await SentEmailAsync("gone@example.kr");
        using var http = new HttpClient();
        var notification = fx.Sns.Notification(Topic, SesBounce(m.ProviderMessageId), signatureVersion: 1);

        // Forged: the signed message with another Message (a bounce of the same mail, "permanent"), a topic the
        // workspace did not name, a certificate from elsewhere, a signature of another key, and an old notification.
        var doc = JsonSerializer.Deserialize<Dictionary<string, string>>(notification)!;
        string With(string field, string value) => JsonSerializer.Serialize(new Dictionary<string, string>(doc) { [field] = value });
        await using var otherKey = new FakeSnsServer();
        await otherKey.StartAsync();
        var forgeries = new[]
        {
            With("Message", SesBounce(m.ProviderMessageId, "Transient").Replace("Transient", "Permanent")),
            With("TopicArn", "arn:aws:sns:ap-northeast-2:999999999999:attacker"),
            With("SigningCertURL", "https://attacker.example/cert.pem"),
            With("Signature", JsonSerializer.Deserialize<Dictionary<string, string>>(otherKey.Notification(Topic, doc["Message"]))!["Signature"]),
            With("SignatureVersion", "3"),
            fx.Sns.Notification(Topic, SesBounce(m.ProviderMessageId), timestamp: DateTimeOffset.UtcNow.AddHours(-2)),
        };
        foreach (var forged in forgeries)
            Assert.Equal(HttpStatusCode.Forbidden, (await FakeSnsServer.DeliverAsync(http, SnsEndpoint(t), forged)).StatusCode);
        Assert.Empty(await WayBack.TypesAsync(fx, t));
        Assert.Equal(0, await WayBack.OutboxCountAsync<ChannelUnreachable>(fx, t));

        // The real one, then replayed: applied once.
        Assert.Equal(HttpStatusCode.OK, (await FakeSnsServer.DeliverAsync(http, SnsEndpoint(t), notification)).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await FakeSnsServer.DeliverAsync(http, SnsEndpoint(t), notification)).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await FakeSnsServer.DeliverAsync(http, SnsEndpoint(t), fx.Sns.Notification(Topic, SesBounce(m.ProviderMessageId)))).StatusCode);

        Assert.Equal(["bounced"], await WayBack.TypesAsync(fx, t));
        Assert.Equal(1, await WayBack.OutboxCountAsync<ChannelUnreachable>(fx, t));
        var bounced = await fx.Client.GetMessageAsync(new GetMessageRequest { MessageId = m.MessageId }, fx.As(t));
        Assert.Equal(MessageStatus.Failed, bounced.Status);
        Assert.Contains("550 5.1.1", bounced.Reason);
        // And the address gets nothing more.
        var next = await fx.Client.SendMessageAsync(WayBack.MarketingEmail(Guid.Parse(m.ContactId), "feedback-2"), fx.As(t));
        Assert.Equal((MessageStatus.Suppressed, "email unreachable (reported by the provider)"), (next.Status, next.Reason));
    }

    [Fact]
    public async Task Should_confirm_a_subscription_of_a_named_topic_only()
    {
        var t = await WayBack.PlatformUnsubscribeWorkspaceAsync(fx);
        await fx.Client.SetEmailFeedbackAsync(new SetEmailFeedbackRequest { SnsTopicArns = { Topic } }, fx.As(t));
        using var http = new HttpClient();
        var before = fx.Sns.Confirmations.Count;

        Assert.Equal(HttpStatusCode.Forbidden, (await FakeSnsServer.DeliverAsync(http, SnsEndpoint(t),
            fx.Sns.SubscriptionConfirmation("arn:aws:sns:ap-northeast-2:999999999999:attacker"))).StatusCode);
        Assert.Equal(before, fx.Sns.Confirmations.Count);
        Assert.Equal(HttpStatusCode.OK, (await FakeSnsServer.DeliverAsync(http, SnsEndpoint(t), fx.Sns.SubscriptionConfirmation(Topic))).StatusCode);
        Assert.Equal(before + 1, fx.Sns.Confirmations.Count);
    }

    [Fact]
    public async Task Should_apply_a_signed_generic_complaint_and_refuse_an_unsigned_or_stale_one()
    {
        var (t, m) = await SentEmailAsync("complainer@example.kr");
        var secret = (await fx.Client.SetEmailFeedbackAsync(new SetEmailFeedbackRequest { SnsTopicArns = { Topic }, RotateWebhookSecret = true }, fx.As(t))).WebhookSecret;
        Assert.StartsWith("whsec_", secret);
        var url = EmailFeedbackWebhook.UrlFor(fx.Host.HttpAddress.ToString(), t);
        var body = JsonSerializer.Serialize(new { type = "complaint", smtp_message_id = $"<{m.ProviderMessageId}>", reason = "abuse" });
        using var http = new HttpClient();

        async Task<HttpStatusCode> PostAsync(string id, long timestamp, string signature)
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, url) { Content = new StringContent(body, Encoding.UTF8, "application/json") };
            request.Headers.Add("webhook-id", id);
            request.Headers.Add("webhook-timestamp", timestamp.ToString(System.Globalization.CultureInfo.InvariantCulture));
            request.Headers.Add("webhook-signature", signature);
            return (await http.SendAsync(request)).StatusCode;
        }

        var now = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        var key = WebhookSignature.Key(secret);
        Assert.Equal(HttpStatusCode.Forbidden, await PostAsync("evt_1", now, "v1,AAAA"));
        Assert.Equal(HttpStatusCode.Forbidden, await PostAsync("evt_1", now - 3600, WebhookSignature.Sign(key, "evt_1", now - 3600, body)));
        Assert.Equal(0, await WayBack.OutboxCountAsync<ChannelUnreachable>(fx, t));

        Assert.Equal(HttpStatusCode.NoContent, await PostAsync("evt_1", now, WebhookSignature.Sign(key, "evt_1", now, body)));
        Assert.Equal(HttpStatusCode.NoContent, await PostAsync("evt_1", now, WebhookSignature.Sign(key, "evt_1", now, body))); // retried
        Assert.Equal(["complained"], await WayBack.TypesAsync(fx, t));
        Assert.Equal(1, await WayBack.OutboxCountAsync<ChannelUnreachable>(fx, t));
    }
}
