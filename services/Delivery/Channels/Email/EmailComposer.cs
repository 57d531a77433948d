using System.Net;
using Crm.Delivery.Features.Messages;
using Crm.Delivery.Features.Policies;
using Crm.Delivery.Features.Tracking;

namespace Crm.Delivery.Channels.Email;

/// <summary>
/// Turns a message into the email that goes out: for marketing, the unsubscribe link (the workspace's own URL,
/// else the platform's one-click link) in List-Unsubscribe / List-Unsubscribe-Post, the Korean advertising form
/// in a Korean workspace, and — unless the workspace turned it off — tracked links and the open pixel.
/// Transactional email goes out as written.
/// </summary>
public sealed class EmailComposer(TrackingLinks links)
{
    public readonly record struct Result(OutgoingEmail? Email, string? Problem);

    public Result Compose(MessageRow m, DeliverySettings settings, ProviderAccountConfig account, string to)
    {
        var subject = m.Subject ?? "";
        var (text, html) = (m.TextBody, m.HtmlBody);
        if (m.Purpose != "marketing") return new(new OutgoingEmail(to, null, subject, text, html, new Dictionary<string, string>()), null);

        var unsubscribe = settings.UnsubscribeUrl.Length > 0
            ? settings.UnsubscribeUrl.Replace("{message_id}", m.MessageId.ToString("N"), StringComparison.Ordinal)
            : links.Enabled ? links.Unsubscribe(m.TenantId, m.MessageId) : null;
        var mailto = settings.UnsubscribeMailto.Length > 0 ? settings.UnsubscribeMailto : null;
        if (unsubscribe is null && mailto is null)
            return new(null, "marketing email needs an unsubscribe URL or address (SetSenderProfile), or the platform's link (Delivery:Tracking:BaseUrl)");
        var headers = AdvertisingForm.UnsubscribeHeaders(unsubscribe, mailto);

        if (settings.KoreanAdvertisingRules)
        {
            if (settings.SenderName.Length == 0)
                return new(null, "marketing email in a Korean workspace needs the sender name (SetSenderProfile)");
            account.Settings.TryGetValue("from", out var from);
            (subject, text, html) = KoreanEmailAd.Apply(subject, text, html, settings.SenderName, from ?? "", settings.PostalAddress,
                unsubscribe ?? AdvertisingForm.MailtoUri(mailto!));
        }

        if (links.Enabled && settings.TrackingEnabled)
        {
            (text, html) = LinkRewriter.Rewrite(text, html, (index, url) => links.Click(m.TenantId, m.MessageId, index, url),
                unsubscribe is null ? [] : [unsubscribe]);
            if (html is not null) html = LinkRewriter.AddPixel(html, links.Open(m.TenantId, m.MessageId));
        }
        return new(new OutgoingEmail(to, null, subject, text, html, headers), null);
    }
}

/// <summary>
/// Korea's advertising form for email (정보통신망법 §50 and its decree): "(광고)" at the start of the subject, and in
/// the body the sender's name, its address (email, and postal when the profile has one) and how to unsubscribe —
/// in the text part and the HTML part alike. Idempotent on the subject.
/// </summary>
public static class KoreanEmailAd
{
    public static (string Subject, string? Text, string? Html) Apply(string subject, string? text, string? html,
        string senderName, string senderEmail, string postalAddress, string unsubscribeUrl)
    {
        if (!subject.StartsWith(AdvertisingForm.KoreanAdPrefix, StringComparison.Ordinal)) subject = AdvertisingForm.KoreanAdPrefix + subject;
        var lines = new List<string> { $"발신자: {senderName}" + (senderEmail.Length > 0 ? $" ({senderEmail})" : "") };
        if (postalAddress.Length > 0) lines.Add($"주소: {postalAddress}");
        if (text is not null)
            text = $"{text}\n\n--\n{string.Join('\n', lines)}\n수신을 원하지 않으시면 여기에서 수신거부하세요: {unsubscribeUrl}\n";
        if (html is not null)
        {
            var footer = $"""<div style="margin-top:24px;font-size:12px;color:#666">{string.Join("<br>", lines.Select(WebUtility.HtmlEncode))}<br>수신을 원하지 않으시면 <a href="{WebUtility.HtmlEncode(unsubscribeUrl)}">수신거부</a>를 눌러 주세요.</div>""";
            html = LinkRewriter.InsertBeforeBodyEnd(html, footer);
        }
        return (subject, text, html);
    }
}
