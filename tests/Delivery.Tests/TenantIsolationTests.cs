using Crm.Delivery.Channels.Sms;
using Crm.Delivery.Tests.Infrastructure;
using Crm.Delivery.V1;
using Crm.TestSupport;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;

namespace Crm.Delivery.Tests;

/// <summary>
/// Two workspaces side by side: every gRPC and REST route of Delivery, and every table under a query
/// that forgot its tenant filter, shows one workspace nothing of the other.
/// </summary>
[Collection(DeliveryCollection.Name)]
public sealed class TenantIsolationTests(DeliveryFixture fx)
{
    private static readonly (string, string, string) SmsMarketingIn = ("sms", "marketing", "opted_in");

    private sealed record Workspace(string Tenant, Guid Contact, Message Sent, Message Waiting);

    /// <summary>A workspace with accounts, caps, quiet hours, a contact with consent, a sent message (with its receipt id) and a scheduled one.</summary>
    private async Task<Workspace> NewWorkspaceAsync(string phone)
    {
        var t = await fx.NewWorkspaceAsync(rules: new FrequencyCapRule { RuleId = "weekly", Scope = CapScope.AllMarketing, Limit = 5, WindowSeconds = 7 * 86400 });
        await fx.Client.SetQuietHoursAsync(new SetQuietHoursRequest { QuietHours = new QuietHours { Enabled = false, Start = "21:00", End = "08:00" } }, fx.As(t));
        var email = $"isolated{phone[^1]}@example.kr";
        var c = await fx.NewContactAsync(t, phone: phone, email: email,
            consents: [SmsMarketingIn, ("sms", "marketing_night", "opted_in"), ("email", "marketing", "opted_in"), ("email", "marketing_night", "opted_in")]);
        // Email feedback settings, and an opened marketing email (an engagement observation).
        await fx.Client.SetEmailFeedbackAsync(new SetEmailFeedbackRequest { SnsTopicArns = { "arn:aws:sns:ap-northeast-2:123456789012:ses" } }, fx.As(t));
        var opened = WayBack.MarketingEmail(c, "opened");
        opened.CampaignId = "";
        await fx.Client.SendMessageAsync(opened, fx.As(t));
        var pixel = Assert.Single(WayBack.PlatformPaths((await WayBack.ReceivedAsync(fx, email)).HtmlBody!, "t/o/"));
        using (var http = WayBack.NoRedirects(fx)) Assert.Equal(System.Net.HttpStatusCode.OK, (await http.GetAsync(pixel)).StatusCode);
        // A customer webhook, so that the send below leaves a delivery row of this workspace too (nothing listens there).
        await fx.Client.CreateWebhookEndpointAsync(new CreateWebhookEndpointRequest
        {
            Endpoint = new WebhookEndpoint { Url = "http://127.0.0.1:9/hooks", EventTypes = { "message.sent" }, Enabled = true },
        }, fx.As(t));
        var sent = await fx.Client.SendMessageAsync(new SendMessageRequest
        {
            IdempotencyKey = "now", ContactId = c.ToString(), Channel = Channel.Sms, Purpose = Purpose.Transactional, TextBody = "주문 확인", CampaignId = "spring",
        }, fx.As(t));
        Assert.Equal(MessageStatus.Sent, sent.Status);
        var waiting = await fx.Client.SendMessageAsync(new SendMessageRequest
        {
            IdempotencyKey = "later", ContactId = c.ToString(), Channel = Channel.Sms, Purpose = Purpose.Transactional, TextBody = "내일 배송", CampaignId = "spring",
            SendAt = Timestamp.FromDateTimeOffset(DateTimeOffset.UtcNow.AddDays(1)),
        }, fx.As(t));
        Assert.Equal(MessageStatus.Deferred, waiting.Status);
        // A cancelled campaign (its tombstone), with an id that both workspaces use.
        await fx.Client.CancelMessagesAsync(new CancelMessagesRequest { CampaignId = "autumn", Reason = "stopped" }, fx.As(t));
        return new Workspace(t, c, sent, waiting);
    }

    [Fact]
    public async Task Should_show_no_route_anything_of_another_workspace()
    {
        var a = await NewWorkspaceAsync("+821070000001");
        var b = await NewWorkspaceAsync("+821070000002");
        var asA = fx.As(a.Tenant);

        // Messages: read, listed, cancelled.
        var read = await Assert.ThrowsAsync<RpcException>(() => fx.Client.GetMessageAsync(new GetMessageRequest { MessageId = b.Sent.MessageId }, asA).ResponseAsync);
        Assert.Equal(StatusCode.NotFound, read.StatusCode);
        // The same campaign id in both workspaces: each sees its own.
        var listed = await fx.Client.ListMessagesAsync(new ListMessagesRequest { CampaignId = "spring", PageSize = 100 }, asA);
        Assert.Equal([a.Sent.MessageId, a.Waiting.MessageId], listed.Messages.Select(m => m.MessageId).Order());
        var byContact = await fx.Client.ListMessagesAsync(new ListMessagesRequest { ContactId = b.Contact.ToString() }, asA);
        Assert.Empty(byContact.Messages);
        var cancel = await fx.Client.CancelMessagesAsync(new CancelMessagesRequest { MessageIds = { b.Waiting.MessageId }, Reason = "not yours" }, asA);
        Assert.Empty(cancel.Cancelled);
        Assert.Equal([b.Waiting.MessageId], cancel.NotCancelled);
        var stillWaiting = await fx.Client.GetMessageAsync(new GetMessageRequest { MessageId = b.Waiting.MessageId }, fx.As(b.Tenant));
        Assert.Equal(MessageStatus.Deferred, stillWaiting.Status);

        // Settings: provider accounts and caps are each workspace's own (same account ids, own rows).
        await fx.Client.SetFrequencyCapRulesAsync(new SetFrequencyCapRulesRequest
        {
            Rules = { new FrequencyCapRule { RuleId = "only-a", Scope = CapScope.AllMarketing, Limit = 1, WindowSeconds = 86400 } },
        }, asA);
        Assert.Equal(["weekly"], (await fx.Client.GetFrequencyCapRulesAsync(new GetFrequencyCapRulesRequest(), fx.As(b.Tenant))).Rules.Select(r => r.RuleId));
        var accountsOfA = await fx.Client.ListProviderAccountsAsync(new ListProviderAccountsRequest(), asA);
        var sms = accountsOfA.Accounts.Single(x => x.Channel == Channel.Sms);
        sms.Settings["from"] = "+15005550099";
        await fx.Client.UpsertProviderAccountAsync(new UpsertProviderAccountRequest { Account = sms, Secret = fx.Twilio.AuthToken }, asA);
        var accountsOfB = await fx.Client.ListProviderAccountsAsync(new ListProviderAccountsRequest(), fx.As(b.Tenant));
        Assert.Equal("+15005550006", accountsOfB.Accounts.Single(x => x.Channel == Channel.Sms).Settings["from"]);

        // Twilio's webhooks: B's message id on A's path (signed with A's token) finds nothing to change.
        var wrongPath = TwilioStatusCallbacks.UrlFor(fx.Host.HttpAddress.ToString(), a.Tenant, "twilio-main");
        var receipt = await fx.Twilio.SendStatusCallbackAsync(b.Sent.ProviderMessageId, "failed", errorCode: 30003, url: wrongPath);
        Assert.Equal(204, receipt.ResponseStatus);
        Assert.Equal(MessageStatus.Sent, (await fx.Client.GetMessageAsync(new GetMessageRequest { MessageId = b.Sent.MessageId }, fx.As(b.Tenant))).Status);
        // ... while on B's own path the same receipt is recorded (so the one above was refused for the tenant, not for its form).
        var rightPath = TwilioStatusCallbacks.UrlFor(fx.Host.HttpAddress.ToString(), b.Tenant, "twilio-main");
        Assert.Equal(204, (await fx.Twilio.SendStatusCallbackAsync(b.Sent.ProviderMessageId, "delivered", url: rightPath)).ResponseStatus);
        Assert.Equal(MessageStatus.Delivered, (await fx.Client.GetMessageAsync(new GetMessageRequest { MessageId = b.Sent.MessageId }, fx.As(b.Tenant))).Status);
        // A path naming no possible workspace is refused before anything is looked up.
        using var http = new HttpClient();
        var nobody = await http.PostAsync(TwilioStatusCallbacks.UrlFor(fx.Host.HttpAddress.ToString(), "NOT A TENANT", "twilio-main"),
            new FormUrlEncodedContent(new Dictionary<string, string> { ["MessageSid"] = b.Sent.ProviderMessageId, ["MessageStatus"] = "failed" }));
        Assert.Equal(System.Net.HttpStatusCode.NotFound, nobody.StatusCode);

        // And the tables themselves, to a query that forgot its tenant filter.
        var views = await TenantIsolationProbe.ViewAsync(fx.ConnectionString, a.Tenant, b.Tenant);
        Assert.Equal(["cancelled_campaigns", "cap_rules", "contact_channels", "contact_consents", "delivery_settings", "email_feedback_settings", "engagement_observations",
                "message_events", "message_provider_ids", "messages", "provider_accounts", "webhook_deliveries", "webhook_endpoints"],
            views.Select(v => v.Table).Order());
        Assert.All(views, v => Assert.True(v.Enabled && v.Forced, $"{v.Table}: row-level security enabled {v.Enabled}, forced {v.Forced}"));
        Assert.All(views, v => Assert.True(v.OwnerSeesOfOther > 0, $"{v.Table} has no rows of the other tenant"));
        Assert.All(views, v => Assert.Equal([a.Tenant], v.SeenAsTenant));
        Assert.All(views, v => Assert.Equal(0, v.SeenWithoutTenant));
        Assert.Equal("42501", await TenantIsolationProbe.TryDisableAsync(fx.ConnectionString, "messages"));
    }
}
