using Crm.BuildingBlocks.Data;
using Crm.BuildingBlocks.Tenancy;
using Crm.Contracts.Delivery;
using Crm.Delivery.Features.Messages;
using Crm.Delivery.Features.Policies;
using Crm.Delivery.Security;
using Crm.Delivery.Tests.Infrastructure;
using Crm.Delivery.V1;
using Crm.Fakes.Twilio;
using Crm.TestSupport;
using Grpc.Core;
using Microsoft.Extensions.DependencyInjection;

namespace Crm.Delivery.Tests;

/// <summary>The platform, not the caller, decides who may skip protection (issue 8, section 4).</summary>
[Collection(DeliveryCollection.Name)]
public sealed class PlatformPolicyTests(DeliveryFixture fx)
{
    private static readonly (string, string, string) SmsMarketingIn = ("sms", "marketing", "opted_in");
    private static readonly (string, string, string) SmsNightIn = ("sms", "marketing_night", "opted_in");

    private static readonly FrequencyCapRule OnePerDay = new()
    {
        RuleId = "one-a-day", Scope = CapScope.AllMarketing, Limit = 1, WindowSeconds = 86_400,
    };

    private static SendMessageRequest Sms(Guid contact, string key, bool ignoreCaps = false, string body = "봄 세일 20% 할인") => new()
    {
        IdempotencyKey = key, ContactId = contact.ToString(), Channel = Channel.Sms, Purpose = Purpose.Marketing, TextBody = body, IgnoreCaps = ignoreCaps,
    };

    private CallOptions Token(string tenant, string subject, params string[] scopes) =>
        new(new Metadata { { "authorization", "Bearer " + fx.Host.Tokens.Issue(tenant, scopes, subject: subject) } });

    [Fact]
    public async Task Should_refuse_ignore_caps_without_the_admin_scope_naming_the_field()
    {
        var t = await fx.NewWorkspaceAsync();
        var c = await fx.NewContactAsync(t, phone: "+821090010001", consents: [SmsMarketingIn, SmsNightIn]);
        var sender = Token(t, "api-key:k-sender", Scope.DeliverySend, Scope.DeliveryRead);

        var one = await Assert.ThrowsAsync<RpcException>(() => fx.Client.SendMessageAsync(Sms(c, "skip-1", ignoreCaps: true), sender).ResponseAsync);
        var batch = await Assert.ThrowsAsync<RpcException>(() => fx.Client.SendMessagesAsync(new SendMessagesRequest
        {
            Messages = { Sms(c, "skip-2"), Sms(c, "skip-3", ignoreCaps: true) },
        }, sender).ResponseAsync);

        Assert.Equal(StatusCode.PermissionDenied, one.StatusCode);
        Assert.Equal("ignore_caps needs the 'delivery.admin' scope", one.Status.Detail);
        Assert.Equal(StatusCode.PermissionDenied, batch.StatusCode);
        Assert.Equal("messages[1].ignore_caps needs the 'delivery.admin' scope", batch.Status.Detail);
        Assert.DoesNotContain(fx.Twilio.Requests, r => r.To == "+821090010001"); // the refusal comes before anything is accepted
        var none = await fx.Client.ListMessagesAsync(new ListMessagesRequest { ContactId = c.ToString() }, fx.As(t));
        Assert.Empty(none.Messages);
    }

    [Fact]
    public async Task Should_let_an_admin_ignore_caps_and_record_who_asked_on_the_timeline()
    {
        var t = await fx.NewWorkspaceAsync(rules: OnePerDay);
        var c = await fx.NewContactAsync(t, phone: "+821090020002", consents: [SmsMarketingIn, SmsNightIn]);
        var admin = Token(t, "api-key:k-admin", Scope.DeliverySend, Scope.DeliveryAdmin);
        var first = await fx.Client.SendMessageAsync(Sms(c, "cap-1"), admin);
        var capped = await fx.Client.SendMessageAsync(Sms(c, "cap-2"), admin);

        var skipped = await fx.Client.SendMessageAsync(Sms(c, "cap-3", ignoreCaps: true), admin);

        Assert.Equal(MessageStatus.Sent, first.Status);
        Assert.Equal(MessageStatus.Suppressed, capped.Status); // the cap binds...
        Assert.Equal(MessageStatus.Sent, skipped.Status);       // ...and only the admin's explicit request skips it
        Assert.Contains(skipped.Timeline, s => s.Reason == "frequency caps ignored at the request of api-key:k-admin");
        Assert.DoesNotContain(first.Timeline, s => s.Reason.Contains("ignored", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Should_suppress_a_DeliverMessage_command_that_asks_to_ignore_caps()
    {
        var t = await fx.NewWorkspaceAsync();
        var c = await fx.NewContactAsync(t, phone: "+821090030003", consents: [SmsMarketingIn, SmsNightIn]);
        var key = "bus-skip-" + c.ToString("N");

        await fx.PublishAsync(new DeliverMessage(t, [new DeliveryRequest(key, c, "sms", "marketing", "campaign-9", null, null, "신상품", IgnoreCaps: true)]));
        await fx.WaitUntilAsync($"SELECT count(*) FROM messages WHERE tenant_id = '{t}' AND status = 'suppressed'", 1);

        var listed = await fx.Client.ListMessagesAsync(new ListMessagesRequest { ContactId = c.ToString() }, fx.As(t));
        var m = Assert.Single(listed.Messages);
        Assert.Equal(MessageStatus.Suppressed, m.Status);
        Assert.Equal(DeliverMessageConsumer.IgnoreCapsRefused, m.Reason);
        Assert.DoesNotContain(fx.Twilio.Requests, r => r.To == "+821090030003");
    }

    [Fact]
    public async Task Should_refuse_provider_endpoints_on_private_addresses_naming_the_setting()
    {
        await using var production = await fx.StartHostAsync(new Dictionary<string, string?> { ["Delivery:AllowPrivateProviderAddresses"] = "false" });
        var client = new DeliveryService.DeliveryServiceClient(production.Channel);
        var t = DeliveryFixture.NewTenant();
        var twilio = new ProviderAccount { AccountId = "twilio-x", Kind = ProviderKind.Twilio, Channel = Channel.Sms, MessagesPerSecond = 1 };
        twilio.Settings.Add("account_sid", "AC123");
        twilio.Settings.Add("from", "+15005550006");
        twilio.Settings.Add("base_url", "http://169.254.169.254/latest");
        var smtp = new ProviderAccount { AccountId = "smtp-x", Kind = ProviderKind.Smtp, Channel = Channel.Email, MessagesPerSecond = 1 };
        smtp.Settings.Add("host", "10.0.0.5");
        smtp.Settings.Add("from", "shop@example.kr");

        var badTwilio = await Assert.ThrowsAsync<RpcException>(() =>
            client.UpsertProviderAccountAsync(new UpsertProviderAccountRequest { Account = twilio, Secret = "token" }, production.As(t)).ResponseAsync);
        var badSmtp = await Assert.ThrowsAsync<RpcException>(() =>
            client.UpsertProviderAccountAsync(new UpsertProviderAccountRequest { Account = smtp }, production.As(t)).ResponseAsync);
        twilio.Settings["base_url"] = "https://api.twilio.com";
        var good = await client.UpsertProviderAccountAsync(new UpsertProviderAccountRequest { Account = twilio, Secret = "token" }, production.As(t));

        Assert.Equal(StatusCode.InvalidArgument, badTwilio.StatusCode);
        Assert.Equal("account.settings.base_url", Assert.Single(FieldViolations(badTwilio)).Field);
        Assert.Contains("169.254.169.254 is link-local", Assert.Single(FieldViolations(badTwilio)).Description, StringComparison.Ordinal);
        Assert.Equal("account.settings.host", Assert.Single(FieldViolations(badSmtp)).Field);
        Assert.Equal("https://api.twilio.com", good.Settings["base_url"]);
    }

    [Fact]
    public async Task Should_bound_provider_error_text_kept_and_returned()
    {
        var t = await fx.NewWorkspaceAsync();
        var c = await fx.NewContactAsync(t, phone: "+821090040004", consents: [SmsMarketingIn, SmsNightIn]);
        fx.Twilio.EnqueueFor("+821090040004", TwilioBehavior.Error(400, 21000, "x" + new string('y', 20_000)));

        var m = await fx.Client.SendMessageAsync(Sms(c, "long-error"), fx.As(t));

        Assert.Equal(MessageStatus.Failed, m.Status);
        Assert.StartsWith("Twilio 400 error 21000: xyyy", m.Reason, StringComparison.Ordinal);
        Assert.Equal(Crm.Delivery.Channels.ProviderText.MaxLength, m.Reason.Length);
        Assert.EndsWith("…", m.Reason, StringComparison.Ordinal);
        Assert.All(m.Timeline, s => Assert.True(s.Reason.Length <= Crm.Delivery.Channels.ProviderText.MaxLength));
    }

    [Fact]
    public async Task Should_apply_korean_advertising_rules_only_to_a_korean_workspace()
    {
        var t = await fx.NewWorkspaceAsync();
        // A US shop: no Korean sender profile at all.
        var profile = await fx.Client.SetSenderProfileAsync(new SetSenderProfileRequest
        {
            Profile = new SenderProfile { UnsubscribeUrl = "https://shop.example.com/u/{message_id}", Jurisdiction = "us" },
        }, fx.As(t));
        var c = await fx.NewContactAsync(t, phone: "+12125550123", timeZone: "America/New_York", consents: [SmsMarketingIn]);
        fx.Clock.Set(new DateTimeOffset(2026, 11, 23, 22, 30, 0, TimeSpan.FromHours(-5))); // 22:30 in New York, no night consent
        try
        {
            var m = await fx.Client.SendMessageAsync(Sms(c, "us-night", body: "Spring sale: 20% off"), fx.As(t));

            Assert.Equal("US", profile.Jurisdiction);
            Assert.Equal(MessageStatus.Sent, m.Status);
            var sent = Assert.Single(fx.Twilio.Messages, x => x.To == "+12125550123");
            Assert.Equal("Spring sale: 20% off", sent.Body); // no (광고), no 080 line
        }
        finally
        {
            fx.Clock.Set(DateTimeOffset.UtcNow);
        }
    }

    [Fact]
    public async Task Should_refuse_a_jurisdiction_that_is_not_a_country_code()
    {
        var t = await fx.NewWorkspaceAsync();
        var e = await Assert.ThrowsAsync<RpcException>(() => fx.Client.SetSenderProfileAsync(new SetSenderProfileRequest
        {
            Profile = new SenderProfile { Jurisdiction = "Korea" },
        }, fx.As(t)).ResponseAsync);
        Assert.Equal("profile.jurisdiction", Assert.Single(FieldViolations(e)).Field);
    }

    [Fact]
    public async Task Should_answer_an_unknown_webhook_account_from_memory_after_the_first_time()
    {
        var clock = new ShiftedClock();
        var policies = NewPolicies(cacheSize: 100, clock);
        var stranger = DeliveryFixture.NewTenant(); // valid-looking, never seen

        Assert.Null(await policies.WebhookAccountAsync(stranger, "twilio-main", "twilio", CancellationToken.None));
        clock.Advance(TimeSpan.FromSeconds(10)); // past the policy's 5 s: only the memory of the unknown account answers
        Assert.Null(await policies.WebhookAccountAsync(stranger, "twilio-main", "twilio", CancellationToken.None));
        clock.Advance(TimeSpan.FromSeconds(10));
        Assert.Null(await policies.WebhookAccountAsync(stranger, "twilio-main", "twilio", CancellationToken.None));

        Assert.Equal(1, policies.Loads);
        var http = new HttpClient { BaseAddress = fx.Host.HttpAddress };
        var answer = await http.PostAsync($"/providers/twilio/{stranger}/twilio-main/status",
            new FormUrlEncodedContent([new("MessageSid", "SM1"), new("MessageStatus", "delivered")]));
        Assert.Equal(System.Net.HttpStatusCode.NotFound, answer.StatusCode);
    }

    [Fact]
    public async Task Should_keep_the_policy_cache_within_its_bound_for_many_tenants()
    {
        var policies = NewPolicies(cacheSize: 50);
        for (var i = 0; i < 300; i++)
        {
            await policies.GetAsync(DeliveryFixture.NewTenant(), CancellationToken.None);
            Assert.True(policies.Count <= 50, $"{policies.Count} entries after {i + 1} tenants");
        }
        Assert.Equal(300, policies.Loads);
    }

    [Fact]
    public async Task Should_not_start_without_a_secret_key_or_with_a_malformed_setting()
    {
        var noKey = await Assert.ThrowsAnyAsync<Exception>(() => fx.StartHostAsync(new Dictionary<string, string?> { ["Delivery:SecretKey"] = "" }));
        var negative = await Assert.ThrowsAnyAsync<Exception>(() => fx.StartHostAsync(new Dictionary<string, string?>
        {
            ["Delivery:DeferredPollInterval"] = "-00:00:01", ["Delivery:PublicBaseUrl"] = "not a url",
        }));
        var outbox = await Assert.ThrowsAnyAsync<Exception>(() => fx.StartHostAsync(new Dictionary<string, string?> { ["Outbox:BatchSize"] = "0" }));

        Assert.Contains("Delivery:SecretKey", noKey.Message, StringComparison.Ordinal);
        Assert.Contains("Delivery:DeferredPollInterval", negative.Message, StringComparison.Ordinal);
        Assert.Contains("Delivery:PublicBaseUrl", negative.Message, StringComparison.Ordinal);
        Assert.Contains("Outbox:BatchSize", outbox.Message, StringComparison.Ordinal);
    }

    private TenantPolicies NewPolicies(int cacheSize, TimeProvider? clock = null)
    {
        var services = fx.Host.App.Services;
        return new TenantPolicies(services.GetRequiredService<TenantDb>(), services.GetRequiredService<SecretBox>(), clock ?? TimeProvider.System,
            new DeliveryOptions { PolicyCacheSize = cacheSize });
    }

    private static IReadOnlyList<Google.Rpc.BadRequest.Types.FieldViolation> FieldViolations(RpcException e) =>
        e.GetRpcStatus()?.GetDetail<Google.Rpc.BadRequest>()?.FieldViolations.ToList() ?? [];
}
