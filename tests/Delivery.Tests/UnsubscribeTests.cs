using System.Net;
using System.Text;
using System.Text.Json;
using Crm.Contracts.Delivery;
using Crm.Delivery.Channels;
using Crm.Delivery.Tests.Infrastructure;
using Crm.Delivery.V1;

namespace Crm.Delivery.Tests;

/// <summary>The platform's one-click unsubscribe (RFC 8058) and the Korean email advertising form.</summary>
[Collection(DeliveryCollection.Name)]
public sealed class UnsubscribeTests(DeliveryFixture fx)
{
    [Fact]
    public async Task Should_stop_the_next_marketing_email_once_the_unsubscribe_link_is_used()
    {
        var t = await WayBack.PlatformUnsubscribeWorkspaceAsync(fx);
        var c = await fx.NewContactAsync(t, email: "leaver@example.kr", consents: WayBack.EmailMarketingIn);
        var first = await fx.Client.SendMessageAsync(WayBack.MarketingEmail(c, "leave-1"), fx.As(t));
        Assert.Equal(MessageStatus.Sent, first.Status);
        var email = await WayBack.ReceivedAsync(fx, "leaver@example.kr");
        Assert.Equal(AdvertisingForm.OneClick, email.Header(AdvertisingForm.ListUnsubscribePost));
        var unsubscribe = Assert.Single(WayBack.PlatformPaths(email.Header(AdvertisingForm.ListUnsubscribe)!, "u/"));
        Assert.Contains("<mailto:unsubscribe@shop.example.kr>", email.Header(AdvertisingForm.ListUnsubscribe));

        // What a mailbox provider does on "unsubscribe": a POST with no cookies, no authorization, nothing but the body.
        using var http = WayBack.NoRedirects(fx);
        var answer = await http.PostAsync(unsubscribe, new StringContent("List-Unsubscribe=One-Click", Encoding.ASCII, "application/x-www-form-urlencoded"));
        Assert.Equal(HttpStatusCode.OK, answer.StatusCode);

        var second = await fx.Client.SendMessageAsync(WayBack.MarketingEmail(c, "leave-2"), fx.As(t));
        Assert.Equal((MessageStatus.Suppressed, "consent: no marketing opt-in on email"), (second.Status, second.Reason));
        Assert.Single(fx.Smtp.Messages, m => m.To.Contains("leaver@example.kr"));
        // Contacts is told, with the request as evidence; the engagement event and the webhook follow.
        Assert.Equal(1, await WayBack.OutboxCountAsync<UnsubscribeRequested>(fx, t));
        Assert.Equal(["unsubscribed"], await WayBack.TypesAsync(fx, t));

        // Used again: nothing more.
        Assert.Equal(HttpStatusCode.OK, (await http.PostAsync(unsubscribe, new StringContent("List-Unsubscribe=One-Click", Encoding.ASCII, "application/x-www-form-urlencoded"))).StatusCode);
        Assert.Equal(1, await WayBack.OutboxCountAsync<UnsubscribeRequested>(fx, t));
    }

    [Fact]
    public async Task Should_only_show_a_page_in_the_contacts_language_on_GET_and_refuse_a_forged_token()
    {
        var t = await WayBack.PlatformUnsubscribeWorkspaceAsync(fx);
        var email = await WayBack.SendMarketingEmailAsync(fx, t, "reader@example.kr", "page-1");
        var unsubscribe = Assert.Single(WayBack.PlatformPaths(email.Header(AdvertisingForm.ListUnsubscribe)!, "u/"));
        using var http = WayBack.NoRedirects(fx);

        var page = await http.GetStringAsync(unsubscribe);
        Assert.Contains("lang=\"ko\"", page);
        Assert.Contains("수신거부", page);
        Assert.Contains($"""<form method="post" action="{unsubscribe["u/".Length..]}">""", page);
        Assert.Contains("""name="List-Unsubscribe" value="One-Click""", page);
        Assert.Equal(0, await WayBack.OutboxCountAsync<UnsubscribeRequested>(fx, t)); // a link scanner's GET unsubscribes nobody

        var forged = unsubscribe[..^3] + (unsubscribe[^3] == 'A' ? "B" : "A") + unsubscribe[^2..];
        Assert.Equal(HttpStatusCode.NotFound, (await http.GetAsync(forged)).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await http.PostAsync(forged, new StringContent("List-Unsubscribe=One-Click", Encoding.ASCII, "application/x-www-form-urlencoded"))).StatusCode);
        Assert.Equal(HttpStatusCode.BadRequest, (await http.PostAsync(unsubscribe, new StringContent("List-Unsubscribe=Maybe", Encoding.ASCII, "application/x-www-form-urlencoded"))).StatusCode);
        Assert.Equal(0, await WayBack.OutboxCountAsync<UnsubscribeRequested>(fx, t));
    }

    /// <summary>
    /// The RFC 8058 rules (data/email_unsubscribe_rules.json, copied from the shared peer vectors) against what we
    /// write and serve: the header values of §3.1 and §8, and the one-click POSTs of §8.1 (form-urlencoded) and
    /// §8.3 (multipart) replayed at our endpoint — each unsubscribes, without a redirect.
    /// </summary>
    [Fact]
    public async Task Should_agree_with_the_RFC8058_peer_vectors()
    {
        using var file = File.OpenRead(Path.Combine(AppContext.BaseDirectory, "data", "email_unsubscribe_rules.json"));
        using var json = await JsonDocument.ParseAsync(file);
        var rules = json.RootElement.GetProperty("rules").EnumerateArray().ToList();
        string Example(string header, string source) => rules.Single(r => r.GetProperty("header").GetString() == header
            && r.GetProperty("source").GetString()!.Contains(source, StringComparison.Ordinal)).GetProperty("example").GetString()!;

        // List-Unsubscribe-Post: exactly the one key/value pair (§3.1, §5).
        var post = $"{AdvertisingForm.ListUnsubscribePost}: {AdvertisingForm.OneClick}";
        Assert.Equal(Example("List-Unsubscribe-Post", "§3.1"), post);
        var headers = AdvertisingForm.UnsubscribeHeaders("https://example.com/unsubscribe/opaquepart", null);
        Assert.Equal(Example("List-Unsubscribe", "§8.1"), $"{AdvertisingForm.ListUnsubscribe}: {headers[AdvertisingForm.ListUnsubscribe]}");

        var posts = rules.Where(r => r.GetProperty("header").GetString()!.StartsWith("(HTTP) one-click POST request", StringComparison.Ordinal)
                                     && r.GetProperty("example").ValueKind == JsonValueKind.String).ToList();
        Assert.Equal(2, posts.Count);
        foreach (var (rule, i) in posts.Select((r, i) => (r, i)))
        {
            var t = await WayBack.PlatformUnsubscribeWorkspaceAsync(fx);
            var address = $"rfc{i}@example.kr";
            var email = await WayBack.SendMarketingEmailAsync(fx, t, address, $"rfc-{i}");
            var unsubscribe = Assert.Single(WayBack.PlatformPaths(email.Header(AdvertisingForm.ListUnsubscribe)!, "u/"));

            // The RFC's request: its Content-Type and body, sent to our URL (the RFC's path and host are examples).
            var request = rule.GetProperty("example").GetString()!;
            var (head, body) = (request[..request.IndexOf("\r\n\r\n", StringComparison.Ordinal)], request[(request.IndexOf("\r\n\r\n", StringComparison.Ordinal) + 4)..]);
            var contentType = head.Split("\r\n").Single(l => l.StartsWith("Content-Type:", StringComparison.Ordinal))["Content-Type:".Length..].Trim();
            // RFC 8058 §8.3's example writes its delimiter lines as the boundary itself, without the "--" RFC 2046 §5.1.1
            // puts before it: read as written, the body has no parts. The boundary parameter is taken one dash shorter, so
            // the body's lines, unchanged, are the delimiters the RFC meant.
            if (contentType.StartsWith("multipart/", StringComparison.Ordinal)) contentType = contentType.Replace("boundary=---", "boundary=-", StringComparison.Ordinal);
            using var content = new ByteArrayContent(Encoding.ASCII.GetBytes(body));
            content.Headers.TryAddWithoutValidation("Content-Type", contentType);
            using var http = WayBack.NoRedirects(fx);
            var answer = await http.PostAsync(unsubscribe, content);

            Assert.True(answer.StatusCode == HttpStatusCode.OK, $"{rule.GetProperty("source").GetString()}: {answer.StatusCode}");
            Assert.Null(answer.Headers.Location); // "MUST NOT return an HTTPS redirect"
            Assert.Equal(1, await WayBack.OutboxCountAsync<UnsubscribeRequested>(fx, t));
        }
    }

    [Fact]
    public async Task Should_mark_a_korean_workspaces_marketing_email_as_advertising()
    {
        var t = await WayBack.PlatformUnsubscribeWorkspaceAsync(fx);
        var email = await WayBack.SendMarketingEmailAsync(fx, t, "korean@example.kr", "ad-1");

        Assert.Equal("(광고)봄 신상품", email.Subject);
        var unsubscribe = Assert.Single(WayBack.PlatformPaths(email.Header(AdvertisingForm.ListUnsubscribe)!, "u/"));
        foreach (var body in new[] { email.TextBody!, email.HtmlBody! })
        {
            Assert.Contains("데모상점", body);
            Assert.Contains("shop@example.kr", body);
            Assert.Contains("서울특별시 중구 세종대로 110", body);
            Assert.Contains(unsubscribe, body);
        }
        Assert.True(email.HtmlBody!.IndexOf("수신거부", StringComparison.Ordinal) < email.HtmlBody.IndexOf("</body>", StringComparison.Ordinal));

        // A US workspace's marketing email is not marked (but still carries its unsubscribe link).
        var us = await WayBack.PlatformUnsubscribeWorkspaceAsync(fx, jurisdiction: "US");
        var plain = await WayBack.SendMarketingEmailAsync(fx, us, "american@example.com", "ad-2");
        Assert.Equal("봄 신상품", plain.Subject);
        Assert.DoesNotContain("세종대로", plain.TextBody);
        Assert.Single(WayBack.PlatformPaths(plain.Header(AdvertisingForm.ListUnsubscribe)!, "u/"));
    }
}
