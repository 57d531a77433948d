using Crm.Contracts.Delivery;
using Crm.Delivery.Features.Tracking;
using Crm.Delivery.Tests.Infrastructure;
using Crm.Delivery.V1;

namespace Crm.Delivery.Tests;

/// <summary>Open and click tracking of email: signed links, a redirect only to the URL signed, each click recorded once.</summary>
[Collection(DeliveryCollection.Name)]
public sealed class TrackingTests(DeliveryFixture fx)
{
    private const string Html = """<html><body><p>봄 세일 <a href="https://shop.example.kr/spring?utm=mail&amp;x=1">보러 가기</a> <a href="mailto:help@shop.example.kr">문의</a> <a href="tel:0801234567">전화</a></p></body></html>""";
    private const string Text = "봄 세일: https://shop.example.kr/spring?utm=mail&x=1. 문의 mailto:help@shop.example.kr";

    [Fact]
    public async Task Should_redirect_a_click_to_the_signed_url_and_record_it_once()
    {
        var t = await WayBack.PlatformUnsubscribeWorkspaceAsync(fx);
        var c = await fx.NewContactAsync(t, email: "clicker@example.kr", consents: WayBack.EmailMarketingIn);
        var m = await fx.Client.SendMessageAsync(WayBack.MarketingEmail(c, "click-1", Html, Text), fx.As(t));
        Assert.Equal(MessageStatus.Sent, m.Status);
        var email = await WayBack.ReceivedAsync(fx, "clicker@example.kr");

        // The link is rewritten in both parts, to one tracked URL; mailto:, tel: and the unsubscribe link are not.
        var htmlClicks = WayBack.PlatformPaths(email.HtmlBody!, "t/c/");
        var textClicks = WayBack.PlatformPaths(email.TextBody!, "t/c/");
        Assert.Equal(htmlClicks, textClicks);
        var click = Assert.Single(htmlClicks);
        Assert.Contains("mailto:help@shop.example.kr", email.HtmlBody);
        Assert.Contains("tel:0801234567", email.HtmlBody);
        Assert.EndsWith(". 문의 mailto:help@shop.example.kr", email.TextBody!.Split('\n')[0]); // the full stop stays outside the link
        Assert.Single(WayBack.PlatformPaths(email.HtmlBody!, "t/o/"));

        using var http = WayBack.NoRedirects(fx);
        foreach (var _ in new[] { 1, 2 })
        {
            var answer = await http.GetAsync(click);
            Assert.Equal(System.Net.HttpStatusCode.Redirect, answer.StatusCode);
            Assert.Equal("https://shop.example.kr/spring?utm=mail&x=1", answer.Headers.Location!.OriginalString);
        }

        // Both redirects answered after recording: one observation, one engagement event for Contacts.
        Assert.Equal(1, await WayBack.CountAsync(fx, "SELECT count(*) FROM engagement_observations WHERE tenant_id = @t AND type = 'clicked'", new { t }));
        Assert.Equal(1, await WayBack.OutboxCountAsync<EngagementObserved>(fx, t));
    }

    [Fact]
    public async Task Should_refuse_a_tampered_click_url_and_record_nothing()
    {
        var t = await WayBack.PlatformUnsubscribeWorkspaceAsync(fx);
        var email = await WayBack.SendMarketingEmailAsync(fx, t, "tamper@example.kr", "tamper-1", Html, Text);
        var click = Assert.Single(WayBack.PlatformPaths(email.HtmlBody!, "t/c/"));
        var token = click["t/c/".Length..];

        // One character changed in the middle (the URL, the message or the tenant), the signature cut short, and a
        // token of another kind (the open pixel's) used as a click: all refused.
        var middle = token.Length / 2;
        var flipped = token[..middle] + (token[middle] == 'A' ? 'B' : 'A') + token[(middle + 1)..];
        var open = Assert.Single(WayBack.PlatformPaths(email.HtmlBody!, "t/o/"))["t/o/".Length..];
        using var http = WayBack.NoRedirects(fx);
        foreach (var bad in new[] { flipped, token[..^2], open, "not-a-token" })
        {
            var answer = await http.GetAsync("t/c/" + bad);
            Assert.Equal(System.Net.HttpStatusCode.NotFound, answer.StatusCode);
            Assert.Null(answer.Headers.Location);
        }
        // A URL of the attacker's choosing signed with another key is refused too.
        var foreign = new TrackingTokens(System.Security.Cryptography.RandomNumberGenerator.GetBytes(32))
            .Create(new TrackingToken(TrackingTokenKind.Click, t, Guid.NewGuid(), 0, "https://evil.example/"));
        Assert.Equal(System.Net.HttpStatusCode.NotFound, (await http.GetAsync("t/c/" + foreign)).StatusCode);

        Assert.Equal(0, await WayBack.CountAsync(fx, "SELECT count(*) FROM engagement_observations WHERE tenant_id = @t", new { t }));
    }

    [Fact]
    public async Task Should_keep_machine_opens_apart_from_a_persons_open()
    {
        var t = await WayBack.PlatformUnsubscribeWorkspaceAsync(fx);
        var email = await WayBack.SendMarketingEmailAsync(fx, t, "opener@example.kr", "open-1", Html, Text);
        var pixel = Assert.Single(WayBack.PlatformPaths(email.HtmlBody!, "t/o/"));
        using var http = WayBack.NoRedirects(fx);
        const string safari = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1";

        async Task OpenAsync(string userAgent)
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, pixel);
            request.Headers.TryAddWithoutValidation("User-Agent", userAgent);
            var answer = await http.SendAsync(request);
            Assert.Equal("image/gif", answer.Content.Headers.ContentType!.MediaType);
        }

        await OpenAsync("Mozilla/5.0"); // Apple Mail Privacy Protection's proxy
        await OpenAsync(safari);        // a person's client, but within seconds of sending: a prefetch
        fx.Clock.Advance(TimeSpan.FromMinutes(2));
        try
        {
            await OpenAsync(safari);
            await OpenAsync(safari);
        }
        finally
        {
            fx.Clock.Advance(TimeSpan.FromMinutes(-2));
        }

        var types = (await WayBack.TypesAsync(fx, t)).ToList();
        Assert.Equal(["machine_opened", "opened"], types);
    }

    [Theory]
    [InlineData("Mozilla/5.0", 600, true)]
    [InlineData("", 600, true)]
    [InlineData("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36", 600, false)]
    [InlineData("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36", 3, true)]
    [InlineData("Mozilla/5.0 (compatible; Barracuda Sentinel)", 600, true)]
    [InlineData("Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)", 600, false)]
    public void Should_tell_machine_opens_by_user_agent_and_time_since_sending(string userAgent, int secondsAfterSending, bool machine)
    {
        var sent = new DateTime(2026, 3, 1, 9, 0, 0, DateTimeKind.Utc);
        Assert.Equal(machine, MachineOpens.IsMachine(userAgent, sent, new DateTimeOffset(sent).AddSeconds(secondsAfterSending), TimeSpan.FromSeconds(10)));
    }

    [Fact]
    public async Task Should_not_track_a_workspace_that_turned_tracking_off()
    {
        var t = await WayBack.PlatformUnsubscribeWorkspaceAsync(fx, tracking: false);
        var email = await WayBack.SendMarketingEmailAsync(fx, t, "private@example.kr", "private-1", Html, Text);

        Assert.Empty(WayBack.PlatformPaths(email.HtmlBody! + email.TextBody, "t/"));
        Assert.Contains("href=\"https://shop.example.kr/spring?utm=mail&amp;x=1\"", email.HtmlBody);
        Assert.Single(WayBack.PlatformPaths(email.Header("List-Unsubscribe")!, "u/")); // unsubscribing is not tracking
    }
}
