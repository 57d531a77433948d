using System.Text.RegularExpressions;
using Crm.Delivery.Tests.Infrastructure;
using Crm.Delivery.V1;
using Crm.Fakes.Smtp;
using Dapper;
using Npgsql;

namespace Crm.Delivery.Tests;

/// <summary>What the tracking, unsubscribe and email feedback tests share: a marketing email sent and found at the SMTP fake.</summary>
internal static partial class WayBack
{
    public static readonly (string, string, string)[] EmailMarketingIn = [("email", "marketing", "opted_in"), ("email", "marketing_night", "opted_in")];

    public static SendMessageRequest MarketingEmail(Guid contact, string key, string html = "<html><body><p>봄 세일</p></body></html>", string text = "봄 세일") => new()
    {
        IdempotencyKey = key, ContactId = contact.ToString(), Channel = Channel.Email, Purpose = Purpose.Marketing, CampaignId = "spring",
        Subject = "봄 신상품", HtmlBody = html, TextBody = text,
    };

    /// <summary>A workspace whose marketing email carries the platform's unsubscribe link (no URL of its own).</summary>
    public static async Task<string> PlatformUnsubscribeWorkspaceAsync(DeliveryFixture fx, string jurisdiction = "KR", bool? tracking = null)
    {
        var t = await fx.NewWorkspaceAsync();
        var profile = new SenderProfile { SenderName = "데모상점", OptOutNumber = "080-123-4567", Jurisdiction = jurisdiction, PostalAddress = "서울특별시 중구 세종대로 110",
            UnsubscribeMailto = "unsubscribe@shop.example.kr" };
        if (tracking is { } on) profile.Tracking = on;
        await fx.Client.SetSenderProfileAsync(new SetSenderProfileRequest { Profile = profile }, fx.As(t));
        return t;
    }

    /// <summary>A contact of <paramref name="tenant"/> with marketing email consent, sent a marketing email: the email as the SMTP fake got it.</summary>
    public static async Task<ReceivedEmail> SendMarketingEmailAsync(DeliveryFixture fx, string tenant, string address, string key,
        string html = "<html><body><p>봄 세일</p></body></html>", string text = "봄 세일")
    {
        var c = await fx.NewContactAsync(tenant, email: address, consents: EmailMarketingIn);
        var m = await fx.Client.SendMessageAsync(MarketingEmail(c, key, html, text), fx.As(tenant));
        Assert.Equal(MessageStatus.Sent, m.Status);
        return await ReceivedAsync(fx, address);
    }

    public static async Task<ReceivedEmail> ReceivedAsync(DeliveryFixture fx, string to, int count = 1)
    {
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (fx.Smtp.Messages.Count(m => m.To.Contains(to)) < count)
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"no email to {to}");
            await Task.Delay(50);
        }
        return fx.Smtp.Messages.Where(m => m.To.Contains(to)).ElementAt(count - 1);
    }

    [GeneratedRegex(@"https://t\.crm\.test/(?<path>(t/[oc]|u)/[A-Za-z0-9_-]+)")]
    public static partial Regex TrackedUrl();

    /// <summary>The platform URLs in a text, in order, as paths on the service (the gateway routes /t and /u there).</summary>
    public static List<string> PlatformPaths(string text, string prefix) =>
        TrackedUrl().Matches(text).Select(m => m.Groups["path"].Value).Where(p => p.StartsWith(prefix, StringComparison.Ordinal)).ToList();

    public static HttpClient NoRedirects(DeliveryFixture fx) =>
        new(new HttpClientHandler { AllowAutoRedirect = false, UseCookies = false }) { BaseAddress = fx.Host.HttpAddress };

    public static async Task<long> CountAsync(DeliveryFixture fx, string sql, object? args = null)
    {
        await using var conn = new NpgsqlConnection(fx.ConnectionString);
        return await conn.ExecuteScalarAsync<long>(sql, args);
    }

    public static Task<long> OutboxCountAsync<T>(DeliveryFixture fx, string tenant) => CountAsync(fx,
        "SELECT count(*) FROM outbox_messages WHERE message_type = @type AND strpos(payload, @tenant) > 0",
        new { type = Crm.BuildingBlocks.Outbox.Outbox.TypeName<T>(), tenant });
}

internal static partial class WayBack
{
    public static async Task<IEnumerable<string>> TypesAsync(DeliveryFixture fx, string tenant)
    {
        await using var conn = new NpgsqlConnection(fx.ConnectionString);
        return await conn.QueryAsync<string>("SELECT type FROM engagement_observations WHERE tenant_id = @tenant ORDER BY type", new { tenant });
    }
}
