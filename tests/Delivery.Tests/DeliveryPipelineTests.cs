using Crm.Contracts.Delivery;
using Crm.Delivery.Tests.Infrastructure;
using Crm.Delivery.V1;
using Crm.Fakes.Twilio;
using Crm.TestSupport;
using MassTransit;
using Dapper;
using Google.Protobuf.WellKnownTypes;
using Npgsql;

namespace Crm.Delivery.Tests;

[Collection(DeliveryCollection.Name)]
public sealed class DeliveryPipelineTests(DeliveryFixture fx)
{
    private static readonly (string, string, string) SmsMarketingIn = ("sms", "marketing", "opted_in");
    private static readonly (string, string, string) SmsNightIn = ("sms", "marketing_night", "opted_in");

    private static SendMessageRequest Sms(Guid contact, string key, Purpose purpose = Purpose.Marketing, string body = "봄 세일 20% 할인") => new()
    {
        IdempotencyKey = key, ContactId = contact.ToString(), Channel = Channel.Sms, Purpose = purpose, TextBody = body,
    };

    [Fact]
    public async Task Should_send_marketing_sms_in_korean_advertising_form_once_per_idempotency_key()
    {
        var t = await fx.NewWorkspaceAsync();
        var c = await fx.NewContactAsync(t, phone: "+821011112222", consents: [SmsMarketingIn, SmsNightIn]);
        var first = await fx.Client.SendMessageAsync(Sms(c, "spring-1"), fx.As(t));
        var again = await fx.Client.SendMessageAsync(Sms(c, "spring-1"), fx.As(t));

        Assert.Equal(MessageStatus.Sent, first.Status);
        Assert.Equal(first.MessageId, again.MessageId);
        var sent = Assert.Single(fx.Twilio.Messages, m => m.To == "+821011112222");
        Assert.StartsWith("(광고)데모상점", sent.Body);
        Assert.EndsWith("무료수신거부 080-123-4567", sent.Body);
        Assert.Equal((1, sent.Segments), (first.Segments, first.Segments)); // UCS-2, 40 units: one part, as the provider bills it
        Assert.Equal(sent.Sid, first.ProviderMessageId);
        Assert.Equal([MessageStatus.Accepted, MessageStatus.Sent], first.Timeline.Select(s => s.Status));
    }

    [Fact]
    public async Task Should_send_once_when_a_DeliverMessage_command_is_delivered_twice()
    {
        var t = await fx.NewWorkspaceAsync();
        var c = await fx.NewContactAsync(t, phone: "+821012120000", consents: [SmsMarketingIn, SmsNightIn]);
        var command = new DeliverMessage(t, [new DeliveryRequest("campaign-7-" + c.ToString("N"), c, "sms", "marketing", "campaign-7", null, null, "신상품 안내")]);
        using var received = ReceivedMessages.Observe(fx.Host.App);
        var (first, retry) = (NewId.NextGuid(), NewId.NextGuid());
        await fx.PublishAsync(command, first);
        await fx.WaitUntilAsync($"SELECT count(*) FROM messages WHERE tenant_id = '{t}' AND status = 'sent'", 1);
        await fx.PublishAsync(command, first); // the broker redelivers
        await fx.PublishAsync(command, retry); // Campaigns retries
        await received.WaitAsync(first, times: 2);
        await received.WaitAsync(retry);
        Assert.Single(fx.Twilio.Requests, r => r.To == "+821012120000");
        await using var conn = new NpgsqlConnection(fx.ConnectionString);
        Assert.Equal(1, await conn.ExecuteScalarAsync<long>("SELECT count(*) FROM messages WHERE tenant_id = @t", new { t }));
    }

    [Fact]
    public async Task Should_record_signed_delivery_receipts_and_refuse_forged_ones()
    {
        var t = await fx.NewWorkspaceAsync();
        var c = await fx.NewContactAsync(t, phone: "+821013130000", consents: [SmsMarketingIn, SmsNightIn]);
        var m = await fx.Client.SendMessageAsync(Sms(c, "receipt-1", Purpose.Transactional, "주문 확인"), fx.As(t));
        Assert.Equal(MessageStatus.Sent, m.Status);

        var receipt = await fx.Twilio.SendStatusCallbackAsync(m.ProviderMessageId, "delivered");
        Assert.Equal(204, receipt.ResponseStatus);
        var delivered = await fx.Client.GetMessageAsync(new GetMessageRequest { MessageId = m.MessageId }, fx.As(t));
        Assert.Equal(MessageStatus.Delivered, delivered.Status);
        Assert.Equal([MessageStatus.Accepted, MessageStatus.Sent, MessageStatus.Delivered], delivered.Timeline.Select(s => s.Status));
        // Twilio repeats itself: the delivery is one engagement event for Contacts.
        Assert.Equal(204, (await fx.Twilio.SendStatusCallbackAsync(m.ProviderMessageId, "delivered")).ResponseStatus);
        Assert.Equal(["delivered"], await WayBack.TypesAsync(fx, t));
        Assert.Equal(1, await WayBack.OutboxCountAsync<EngagementObserved>(fx, t));

        using var http = new HttpClient();
        var forged = await http.PostAsync(Crm.Delivery.Channels.Sms.TwilioStatusCallbacks.UrlFor(fx.Host.HttpAddress.ToString(), t, "twilio-main"),
            new FormUrlEncodedContent(new Dictionary<string, string> { ["MessageSid"] = m.ProviderMessageId, ["MessageStatus"] = "failed" }));
        Assert.Equal(System.Net.HttpStatusCode.Forbidden, forged.StatusCode);
    }

    [Fact]
    public async Task Should_announce_a_signed_stop_reply_as_an_opt_out_and_refuse_an_unsigned_one()
    {
        var t = await fx.NewWorkspaceAsync();
        var url = Crm.Delivery.Channels.Sms.TwilioIncomingMessages.UrlFor(fx.Host.HttpAddress.ToString(), t, "twilio-main");
        var form = new Dictionary<string, string> { ["MessageSid"] = "SM" + Guid.NewGuid().ToString("N"), ["From"] = "+821012120000", ["To"] = "+15005550006", ["Body"] = " 수신거부 " };
        using var http = new HttpClient();
        using var signed = new HttpRequestMessage(HttpMethod.Post, url) { Content = new FormUrlEncodedContent(form) };
        signed.Headers.Add(Crm.Delivery.Channels.Sms.TwilioSignature.HeaderName,
            Crm.Delivery.Channels.Sms.TwilioSignature.Compute(url, form, fx.Twilio.AuthToken));
        var answer = await http.SendAsync(signed);
        Assert.Equal(System.Net.HttpStatusCode.OK, answer.StatusCode);
        Assert.Contains("<Response></Response>", await answer.Content.ReadAsStringAsync(), StringComparison.Ordinal);

        await using var conn = new NpgsqlConnection(fx.ConnectionString);
        var payload = await conn.QuerySingleAsync<string>(
            "SELECT payload FROM outbox_messages WHERE message_type LIKE 'Crm.Contracts.Delivery.SmsReplyReceived%' AND payload::json->>'tenantId' = @t", new { t });
        var reply = System.Text.Json.JsonSerializer.Deserialize<SmsReplyReceived>(payload, Crm.BuildingBlocks.Outbox.Outbox.Json)!;
        Assert.Equal(("+821012120000", true, form["MessageSid"]), (reply.From, reply.OptOut, reply.ProviderMessageId));

        var forged = await http.PostAsync(url, new FormUrlEncodedContent(form));
        Assert.Equal(System.Net.HttpStatusCode.Forbidden, forged.StatusCode);
    }

    [Theory]
    [InlineData("STOP", true)]
    [InlineData(" stop. ", true)]
    [InlineData("수신거부", true)]
    [InlineData("수신 거부!", true)]
    [InlineData("해지", true)]
    [InlineData("please stop sending", false)]
    [InlineData("감사합니다", false)]
    public void Should_know_an_opt_out_keyword_only_when_it_is_the_whole_reply(string body, bool optOut) =>
        Assert.Equal(optOut, Crm.Delivery.Channels.Sms.OptOutKeywords.IsOptOut(body));

    [Fact]
    public async Task Should_suppress_without_consent_and_say_why()
    {
        var t = await fx.NewWorkspaceAsync();
        var noOptIn = await fx.NewContactAsync(t, phone: "+821033334444");
        var optedOut = await fx.NewContactAsync(t, phone: "+821033335555", consents: [("sms", "transactional", "opted_out")]);

        var marketing = await fx.Client.SendMessageAsync(Sms(noOptIn, "m-1"), fx.As(t));
        Assert.Equal(MessageStatus.Suppressed, marketing.Status);
        Assert.Equal("consent: no marketing opt-in on sms", marketing.Reason);

        var receipt = await fx.Client.SendMessageAsync(Sms(noOptIn, "r-1", Purpose.Transactional, "주문이 발송되었습니다"), fx.As(t));
        Assert.Equal(MessageStatus.Sent, receipt.Status); // transactional needs only no opt-out

        var refused = await fx.Client.SendMessageAsync(Sms(optedOut, "r-2", Purpose.Transactional, "주문 확인"), fx.As(t));
        Assert.Equal(MessageStatus.Suppressed, refused.Status);
        Assert.Contains("opted out", refused.Reason);
        Assert.DoesNotContain(fx.Twilio.Requests, r => r.To == "+821033335555");

        await fx.PublishAsync(new Crm.Contracts.Contacts.ContactErased(t, noOptIn, DateTimeOffset.UtcNow));
        await fx.WaitUntilAsync($"SELECT count(*) FROM contact_channels WHERE tenant_id = '{t}' AND contact_id = '{noOptIn}' AND erased", 1);
        var erased = await fx.Client.SendMessageAsync(Sms(noOptIn, "r-3", Purpose.Transactional, "주문 확인"), fx.As(t));
        Assert.Equal("contact erased", erased.Reason);
    }

    [Fact]
    public async Task Should_cut_an_erased_contacts_address_out_of_the_provider_errors_that_quote_it()
    {
        var t = await fx.NewWorkspaceAsync();
        const string phone = "+821046461212";
        const string digits = "821046461212"; // JSON payloads escape the '+'; the digits are in every form
        var c = await fx.NewContactAsync(t, phone: phone);
        await fx.Client.CreateWebhookEndpointAsync(new CreateWebhookEndpointRequest
        {
            Endpoint = new WebhookEndpoint { Url = "http://127.0.0.1:9/hooks", EventTypes = { "message.failed" }, Enabled = true },
        }, fx.As(t));
        fx.Twilio.EnqueueFor(phone, TwilioBehavior.InvalidTo());
        var failed = await fx.Client.SendMessageAsync(Sms(c, "bad-number", Purpose.Transactional, "주문 확인"), fx.As(t));
        Assert.Equal(MessageStatus.Failed, failed.Status);
        Assert.Contains(phone, failed.Reason); // Twilio quotes the number
        const string quoting = "SELECT (SELECT count(*) FROM messages WHERE tenant_id = @t AND strpos(reason, @digits) > 0)"
            + " + (SELECT count(*) FROM message_events WHERE tenant_id = @t AND strpos(reason, @digits) > 0)"
            + " + (SELECT count(*) FROM webhook_deliveries WHERE tenant_id = @t AND strpos(payload, @digits) > 0)";
        await using var db = new Npgsql.NpgsqlConnection(fx.ConnectionString);
        var before = await Dapper.SqlMapper.QuerySingleAsync<(long Messages, long Events, long Webhooks)>(db,
            "SELECT (SELECT count(*) FROM messages WHERE tenant_id = @t AND strpos(reason, @digits) > 0),"
            + " (SELECT count(*) FROM message_events WHERE tenant_id = @t AND strpos(reason, @digits) > 0),"
            + " (SELECT count(*) FROM webhook_deliveries WHERE tenant_id = @t AND strpos(payload, @digits) > 0)", new { t, digits });
        Assert.Equal((1L, 1L, 1L), before);

        await fx.PublishAsync(new Crm.Contracts.Contacts.ContactErased(t, c, DateTimeOffset.UtcNow));
        await fx.WaitUntilAsync($"SELECT count(*) FROM contact_channels WHERE tenant_id = '{t}' AND contact_id = '{c}' AND erased", 1);
        Assert.Equal(0L, await Dapper.SqlMapper.ExecuteScalarAsync<long>(db, quoting, new { t, digits }));
        Assert.Equal(0L, await Dapper.SqlMapper.ExecuteScalarAsync<long>(db, "SELECT count(*) FROM outbox_messages WHERE strpos(payload, @digits) > 0", new { digits }));
        var after = await fx.Client.GetMessageAsync(new GetMessageRequest { MessageId = failed.MessageId }, fx.As(t));
        Assert.Contains("21211", after.Reason); // the code stays for the ledger
        Assert.Contains("[erased]", after.Reason);
    }

    [Fact]
    public async Task Should_defer_at_night_without_night_consent_and_release_at_eight()
    {
        var t = await fx.NewWorkspaceAsync();
        var c = await fx.NewContactAsync(t, phone: "+821055556666", consents: [SmsMarketingIn]);
        // 22:30 in Seoul.
        fx.Clock.Set(new DateTimeOffset(2026, 11, 23, 22, 30, 0, TimeSpan.FromHours(9)));
        try
        {
            var m = await fx.Client.SendMessageAsync(Sms(c, "night-1"), fx.As(t));
            Assert.Equal(MessageStatus.Deferred, m.Status);
            Assert.Equal("advertising between 21:00 and 08:00 needs night-time consent", m.Reason);
            Assert.Equal(new DateTimeOffset(2026, 11, 24, 8, 0, 0, TimeSpan.FromHours(9)), m.NotBefore.ToDateTimeOffset());

            var marker = await ScheduledMarkerAsync(t, "+821055557777", new DateTimeOffset(2026, 11, 24, 7, 58, 30, TimeSpan.FromHours(9)));
            fx.Clock.Set(new DateTimeOffset(2026, 11, 24, 7, 59, 0, TimeSpan.FromHours(9)));
            await SentAsync(t, marker); // released at 07:59, in a poll that saw the 08:00 message too
            Assert.DoesNotContain(fx.Twilio.Requests, r => r.To == "+821055556666");

            fx.Clock.Set(new DateTimeOffset(2026, 11, 24, 8, 0, 1, TimeSpan.FromHours(9)));
            await Eventually(() => fx.Twilio.Messages.Any(r => r.To == "+821055556666"));
            // The provider has it; the outcome is written right after the answer.
            var released = await WhenSentAsync(t, m.MessageId);
            Assert.Equal([MessageStatus.Accepted, MessageStatus.Deferred, MessageStatus.Sent], released.Timeline.Select(s => s.Status));
        }
        finally
        {
            fx.Clock.Set(DateTimeOffset.UtcNow);
        }
    }

    [Fact]
    public async Task Should_hold_a_scheduled_message_until_its_time_and_then_send_it()
    {
        var t = await fx.NewWorkspaceAsync();
        var c = await fx.NewContactAsync(t, phone: "+821088880001", consents: [SmsMarketingIn, SmsNightIn]);
        var start = new DateTimeOffset(2026, 11, 23, 14, 0, 0, TimeSpan.FromHours(9));
        fx.Clock.Set(start);
        try
        {
            var request = Sms(c, "reminder-1", Purpose.Transactional, "[데모상점] 내일 오전 10시 예약을 잊지 마세요.");
            request.SendAt = Timestamp.FromDateTimeOffset(start.AddHours(2));
            var m = await fx.Client.SendMessageAsync(request, fx.As(t));
            Assert.Equal((MessageStatus.Deferred, "scheduled"), (m.Status, m.Reason));
            Assert.Equal(start.AddHours(2), m.NotBefore.ToDateTimeOffset());

            var marker = await ScheduledMarkerAsync(t, "+821088880009", start.AddHours(2).AddSeconds(-60));
            fx.Clock.Set(start.AddHours(2).AddSeconds(-30));
            await SentAsync(t, marker); // released 30 s before, in a poll that saw the 16:00 message too
            Assert.DoesNotContain(fx.Twilio.Requests, r => r.To == "+821088880001");

            fx.Clock.Set(start.AddHours(2).AddSeconds(1));
            await Eventually(() => fx.Twilio.Messages.Any(r => r.To == "+821088880001"));
            var sent = await WhenSentAsync(t, m.MessageId);
            Assert.Equal([MessageStatus.Accepted, MessageStatus.Deferred, MessageStatus.Sent], sent.Timeline.Select(s => s.Status));
            Assert.Equal("scheduled", sent.Timeline[1].Reason);

            // A schedule after the message's own expiry could never be kept.
            var impossible = Sms(c, "reminder-2", Purpose.Transactional);
            impossible.SendAt = Timestamp.FromDateTimeOffset(start.AddDays(2));
            impossible.ExpiresAt = Timestamp.FromDateTimeOffset(start.AddDays(1));
            var ex = await Assert.ThrowsAsync<Grpc.Core.RpcException>(() => fx.Client.SendMessageAsync(impossible, fx.As(t)).ResponseAsync);
            Assert.Equal("send_at", Assert.Single(Grpc.Core.RpcExceptionExtensions.GetRpcStatus(ex)!.GetDetail<Google.Rpc.BadRequest>()!.FieldViolations).Field);
        }
        finally
        {
            fx.Clock.Set(DateTimeOffset.UtcNow);
        }
    }

    [Fact]
    public async Task Should_withdraw_a_campaigns_waiting_messages_and_never_send_them()
    {
        var t = await fx.NewWorkspaceAsync();
        var night = await fx.NewContactAsync(t, phone: "+821077770001", consents: [SmsMarketingIn]);
        var day = await fx.NewContactAsync(t, phone: "+821077770002", consents: [SmsMarketingIn, SmsNightIn]);
        fx.Clock.Set(new DateTimeOffset(2026, 11, 23, 22, 30, 0, TimeSpan.FromHours(9)));
        try
        {
            // One goes out now (night-time consent), one waits for 08:00.
            SendMessageRequest Campaign(Guid contact, string key)
            {
                var r = Sms(contact, key);
                r.CampaignId = "winter-sale";
                return r;
            }
            var sent = await fx.Client.SendMessageAsync(Campaign(day, "sale-day"), fx.As(t));
            var waiting = await fx.Client.SendMessageAsync(Campaign(night, "sale-night"), fx.As(t));
            Assert.Equal((MessageStatus.Sent, MessageStatus.Deferred), (sent.Status, waiting.Status));

            // The price was wrong: the campaign is withdrawn.
            var cancel = await fx.Client.CancelMessagesAsync(new CancelMessagesRequest
            {
                CampaignId = "winter-sale", MessageIds = { sent.MessageId }, Reason = "wrong price",
            }, fx.As(t));
            Assert.Equal([waiting.MessageId], cancel.Cancelled);
            Assert.Equal([sent.MessageId], cancel.NotCancelled); // it had gone out
            Assert.False(cancel.More);

            var withdrawn = await fx.Client.GetMessageAsync(new GetMessageRequest { MessageId = waiting.MessageId }, fx.As(t));
            Assert.Equal(MessageStatus.Suppressed, withdrawn.Status);
            Assert.Equal("cancelled: wrong price", withdrawn.Reason);
            Assert.Equal([MessageStatus.Accepted, MessageStatus.Deferred, MessageStatus.Suppressed], withdrawn.Timeline.Select(s => s.Status));

            // 08:00 comes and goes: nothing of the campaign is released, while another message waiting for 08:00 is.
            var other = await fx.NewContactAsync(t, phone: "+821077770009", consents: [SmsMarketingIn]);
            var marker = await fx.Client.SendMessageAsync(Sms(other, "not-the-sale"), fx.As(t));
            Assert.Equal(MessageStatus.Deferred, marker.Status);
            fx.Clock.Set(new DateTimeOffset(2026, 11, 24, 8, 0, 1, TimeSpan.FromHours(9)));
            await SentAsync(t, marker.MessageId);
            Assert.DoesNotContain(fx.Twilio.Requests, r => r.To == "+821077770001");

            var bad = await Assert.ThrowsAsync<Grpc.Core.RpcException>(() => fx.Client.CancelMessagesAsync(
                new CancelMessagesRequest { MessageIds = { "not-an-id" } }, fx.As(t)).ResponseAsync);
            Assert.Equal(Grpc.Core.StatusCode.InvalidArgument, bad.StatusCode);
            Assert.Equal(["message_ids[0]", "reason"], Grpc.Core.RpcExceptionExtensions.GetRpcStatus(bad)!
                .GetDetail<Google.Rpc.BadRequest>()!.FieldViolations.Select(f => f.Field));
        }
        finally
        {
            fx.Clock.Set(DateTimeOffset.UtcNow);
        }
    }

    [Fact]
    public async Task Should_keep_tenant_quiet_hours_in_the_contacts_time_zone()
    {
        var t = await fx.NewWorkspaceAsync();
        await fx.Client.SetQuietHoursAsync(new SetQuietHoursRequest { QuietHours = new QuietHours { Enabled = true, Start = "12:00", End = "14:00" } }, fx.As(t));
        var london = await fx.NewContactAsync(t, phone: "+447400123456", timeZone: "Europe/London", consents: [SmsMarketingIn, SmsNightIn]);
        fx.Clock.Set(new DateTimeOffset(2026, 7, 1, 12, 30, 0, TimeSpan.FromHours(1))); // 12:30 BST
        try
        {
            var m = await fx.Client.SendMessageAsync(Sms(london, "q-1"), fx.As(t));
            Assert.Equal(MessageStatus.Deferred, m.Status);
            Assert.Equal(new DateTimeOffset(2026, 7, 1, 14, 0, 0, TimeSpan.FromHours(1)), m.NotBefore.ToDateTimeOffset());
            // A transactional message is not held by marketing quiet hours.
            var otp = await fx.Client.SendMessageAsync(Sms(london, "q-2", Purpose.Transactional, "Your code is 123456"), fx.As(t));
            Assert.Equal(MessageStatus.Sent, otp.Status);
        }
        finally
        {
            fx.Clock.Set(DateTimeOffset.UtcNow);
        }
    }

    [Fact]
    public async Task Should_retry_429_and_send_once()
    {
        var t = await fx.NewWorkspaceAsync();
        var c = await fx.NewContactAsync(t, phone: "+821077778888", consents: [SmsMarketingIn, SmsNightIn]);
        fx.Twilio.EnqueueFor("+821077778888", TwilioBehavior.TooManyRequests(retryAfterSeconds: 1));
        var m = await fx.Client.SendMessageAsync(Sms(c, "busy-1"), fx.As(t));
        Assert.Equal(MessageStatus.Sent, m.Status);
        Assert.Equal(2, fx.Twilio.Requests.Count(r => r.To == "+821077778888"));
        Assert.Single(fx.Twilio.Messages, r => r.To == "+821077778888");
    }

    [Fact]
    public async Task Should_mark_sms_unreachable_on_21610_and_stop_sending()
    {
        var t = await fx.NewWorkspaceAsync();
        var c = await fx.NewContactAsync(t, phone: "+821099990000", consents: [SmsMarketingIn, SmsNightIn]);
        fx.Twilio.EnqueueFor("+821099990000", TwilioBehavior.Unsubscribed(), FakeTwilioServer.Forever);
        var m = await fx.Client.SendMessageAsync(Sms(c, "stop-1"), fx.As(t));
        Assert.Equal(MessageStatus.Failed, m.Status);
        Assert.Contains("21610", m.Reason);

        var next = await fx.Client.SendMessageAsync(Sms(c, "stop-2", Purpose.Transactional, "주문 확인"), fx.As(t));
        Assert.Equal(MessageStatus.Suppressed, next.Status);
        Assert.Equal("sms unreachable (reported by the provider)", next.Reason);
        Assert.Single(fx.Twilio.Requests, r => r.To == "+821099990000");

        // Contacts is told through the outbox.
        await using var conn = new NpgsqlConnection(fx.ConnectionString);
        var published = await conn.ExecuteScalarAsync<long>(
            "SELECT count(*) FROM outbox_messages WHERE message_type LIKE 'Crm.Contracts.Delivery.ChannelUnreachable%' AND payload::json->>'contactId' = @c",
            new { c = c.ToString() });
        Assert.Equal(1, published);
    }

    [Fact]
    public async Task Should_refuse_a_provider_account_its_sender_could_not_use_naming_the_problem()
    {
        var t = await fx.NewWorkspaceAsync();
        var account = new ProviderAccount { AccountId = "smtp-typo", Kind = ProviderKind.Smtp, Channel = Channel.Email, MessagesPerSecond = 10 };
        account.Settings.Add("host", "smtp.example.kr");
        account.Settings.Add("from", "shop@example.kr");
        account.Settings.Add("port", "25x");

        var ex = await Assert.ThrowsAsync<Grpc.Core.RpcException>(() =>
            fx.Client.UpsertProviderAccountAsync(new UpsertProviderAccountRequest { Account = account }, fx.As(t)).ResponseAsync);

        Assert.Equal(Grpc.Core.StatusCode.InvalidArgument, ex.StatusCode);
        var violation = Assert.Single(Grpc.Core.RpcExceptionExtensions.GetRpcStatus(ex)!.GetDetail<Google.Rpc.BadRequest>()!.FieldViolations);
        Assert.Equal("account.settings", violation.Field);
        Assert.Equal("port '25x' is not a TCP port", violation.Description);
    }

    [Fact]
    public async Task Should_refuse_a_sender_profile_whose_unsubscribe_headers_could_not_be_written()
    {
        var t = await fx.NewWorkspaceAsync();
        var ex = await Assert.ThrowsAsync<Grpc.Core.RpcException>(() => fx.Client.SetSenderProfileAsync(new SetSenderProfileRequest
        {
            Profile = new SenderProfile { SenderName = "데모상점", UnsubscribeUrl = "https://shop.example.kr/수신거부/{message_id}", UnsubscribeMailto = "nobody" },
        }, fx.As(t)).ResponseAsync);

        Assert.Equal(Grpc.Core.StatusCode.InvalidArgument, ex.StatusCode);
        var fields = Grpc.Core.RpcExceptionExtensions.GetRpcStatus(ex)!.GetDetail<Google.Rpc.BadRequest>()!.FieldViolations.Select(f => f.Field);
        Assert.Equal(["profile.unsubscribe_url", "profile.unsubscribe_mailto"], fields);
    }

    [Fact]
    public async Task Should_accept_a_key_Redis_remembers_but_PostgreSQL_never_stored()
    {
        // A worker set the key in Redis and died before its insert committed: the row is the truth.
        var t = await fx.NewWorkspaceAsync();
        var c = await fx.NewContactAsync(t, phone: "+821066660001", consents: [SmsMarketingIn, SmsNightIn]);
        await fx.Redis.GetDatabase().StringSetAsync($"{fx.RedisPrefix}{{t:{t}}}:idem:orphan-1", Guid.NewGuid().ToString("N"), TimeSpan.FromMinutes(5));

        var m = await fx.Client.SendMessageAsync(Sms(c, "orphan-1"), fx.As(t));

        Assert.Equal(MessageStatus.Sent, m.Status);
        Assert.Single(fx.Twilio.Messages, r => r.To == "+821066660001");
    }

    [Fact]
    public async Task Should_publish_one_event_per_batch_and_outcome_naming_each_message()
    {
        var t = await fx.NewWorkspaceAsync();
        var a = await fx.NewContactAsync(t, phone: "+821055550001", consents: [SmsMarketingIn, SmsNightIn]);
        var b = await fx.NewContactAsync(t, phone: "+821055550002", consents: [SmsMarketingIn, SmsNightIn]);
        var silent = await fx.NewContactAsync(t, phone: "+821055550003", consents: []);
        var batch = await fx.Client.SendMessagesAsync(new SendMessagesRequest { Messages = { Sms(a, "batch-a"), Sms(b, "batch-b"), Sms(silent, "batch-c") } }, fx.As(t));
        Assert.Equal([MessageStatus.Sent, MessageStatus.Sent, MessageStatus.Suppressed], batch.Messages.Select(m => m.Status));

        await using var conn = new NpgsqlConnection(fx.ConnectionString);
        var events = (await conn.QueryAsync<(string Type, string Payload)>(
            "SELECT message_type, payload FROM outbox_messages WHERE payload::json->>'tenantId' = @t ORDER BY id", new { t })).ToList();
        var sent = Assert.Single(events, e => e.Type.StartsWith("Crm.Contracts.Delivery.MessagesSent,", StringComparison.Ordinal));
        var suppressed = Assert.Single(events, e => e.Type.StartsWith("Crm.Contracts.Delivery.MessagesSuppressed,", StringComparison.Ordinal));
        var sentBatch = System.Text.Json.JsonSerializer.Deserialize<MessagesSent>(sent.Payload, Crm.BuildingBlocks.Outbox.Outbox.Json)!;
        Assert.Equal(new[] { a, b }.Order(), sentBatch.Messages.Select(m => m.ContactId).Order());
        Assert.All(sentBatch.Messages, m => Assert.StartsWith("SM", m.ProviderMessageId, StringComparison.Ordinal));
        var suppressedOne = Assert.Single(System.Text.Json.JsonSerializer.Deserialize<MessagesSuppressed>(suppressed.Payload, Crm.BuildingBlocks.Outbox.Outbox.Json)!.Messages);
        Assert.Equal(silent, suppressedOne.ContactId);
        Assert.Equal("consent: no marketing opt-in on sms", suppressedOne.Reason);
    }

    [Fact]
    public async Task Should_never_exceed_one_message_a_second_on_a_long_code()
    {
        var t = await fx.NewWorkspaceAsync(smsPerSecond: 1);
        var contacts = new List<Guid>();
        for (var i = 0; i < 4; i++) contacts.Add(await fx.NewContactAsync(t, phone: $"+8210444400{i:D2}", consents: [SmsMarketingIn, SmsNightIn]));
        var sends = contacts.Select((c, i) => fx.Client.SendMessageAsync(
            Sms(c, $"rate-{i}", Purpose.Transactional, "배송 출발"), fx.As(t)).ResponseAsync).ToList();
        var results = await Task.WhenAll(sends);
        // Throttled messages either waited (sent) or were deferred; all go out in the end.
        await Eventually(() => fx.Twilio.Messages.Count(r => r.To?.StartsWith("+8210444400", StringComparison.Ordinal) == true) >= 4, seconds: 20);
        var arrivals = fx.Twilio.Requests.Where(r => r.To?.StartsWith("+8210444400", StringComparison.Ordinal) == true).OrderBy(r => r.SinceStart).ToList();
        Assert.Equal(4, arrivals.Count);
        var trace = string.Join("; ", arrivals.Select(a => $"{a.To} at {a.SinceStart.TotalMilliseconds:F0}"));
        for (var i = 1; i < arrivals.Count; i++)
            Assert.True(arrivals[i].SinceStart - arrivals[i - 1].SinceStart >= TimeSpan.FromSeconds(1),
                $"two messages {(arrivals[i].SinceStart - arrivals[i - 1].SinceStart).TotalMilliseconds:F0} ms apart: {trace}");
        Assert.All(results, r => Assert.NotEqual(MessageStatus.Failed, r.Status));
    }

    /// <summary>
    /// A transactional message to a contact of its own, scheduled for a moment the clock has not reached:
    /// once it is sent, the deferred-message poller has run with the clock past that moment.
    /// </summary>
    private async Task<string> ScheduledMarkerAsync(string tenant, string phone, DateTimeOffset at)
    {
        var contact = await fx.NewContactAsync(tenant, phone: phone);
        var request = Sms(contact, "marker-" + contact.ToString("N"), Purpose.Transactional, "[데모상점] 예약 안내");
        request.SendAt = Timestamp.FromDateTimeOffset(at);
        var m = await fx.Client.SendMessageAsync(request, fx.As(tenant));
        Assert.Equal((MessageStatus.Deferred, "scheduled"), (m.Status, m.Reason));
        return m.MessageId;
    }

    private async Task SentAsync(string tenant, string messageId) =>
        Assert.Equal(MessageStatus.Sent, (await WhenSentAsync(tenant, messageId)).Status);

    /// <summary>The message once its outcome is written (right after the provider's answer), or as it is after 10 s.</summary>
    private async Task<Message> WhenSentAsync(string tenant, string messageId)
    {
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (true)
        {
            var m = await fx.Client.GetMessageAsync(new GetMessageRequest { MessageId = messageId }, fx.As(tenant));
            if (m.Status == MessageStatus.Sent || DateTime.UtcNow > deadline) return m;
            await Task.Delay(50);
        }
    }

    internal static async Task Eventually(Func<bool> condition, int seconds = 10)
    {
        var deadline = DateTime.UtcNow.AddSeconds(seconds);
        while (!condition())
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException("The condition did not become true in time.");
            await Task.Delay(50);
        }
    }
}
