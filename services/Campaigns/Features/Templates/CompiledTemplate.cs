using Crm.BuildingBlocks.Errors;
using Crm.Campaigns.V1;
using Fluid;
using Fluid.Values;

namespace Crm.Campaigns.Features.Templates;

/// <summary>
/// A template with every part of every locale parsed once: saving checks it, a run compiles it once and
/// renders it for each recipient. Locale fallback: the locale asked for, then its language ("ko" for
/// "ko-KR", or any "ko-*"), then the workspace's default locale the same way, then the first content.
/// </summary>
public sealed class CompiledTemplate
{
    public static readonly string[] Channels = ["email", "sms", "push", "kakao"];

    private readonly List<(string Locale, Parts Parts)> _contents;

    private CompiledTemplate(string channel, List<(string, Parts)> contents)
    {
        Channel = channel;
        _contents = contents;
    }

    public string Channel { get; }

    /// <summary>Parses a template; every problem is a violation under <paramref name="field"/> (e.g. "template").</summary>
    public static CompiledTemplate? Compile(Template template, string field, Validation v)
    {
        if (!Channels.Contains(template.Channel))
        {
            v.Add($"{field}.channel", "must be one of email, sms, push, kakao");
            return null;
        }
        if (template.Contents.Count == 0) v.Add($"{field}.contents", "needs at least one locale");
        if (template.Contents.Count > 50) v.Add($"{field}.contents", "at most 50 locales");
        var contents = new List<(string, Parts)>();
        var seen = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        for (var i = 0; i < template.Contents.Count; i++)
        {
            var c = template.Contents[i];
            var f = $"{field}.contents[{i}]";
            if (!IsLocale(c.Locale)) v.Add($"{f}.locale", "is required: a BCP 47 tag such as \"ko-KR\" or \"en\"");
            else if (!seen.Add(c.Locale)) v.Add($"{f}.locale", $"'{c.Locale}' is listed twice");
            var parts = CompileParts(template.Channel, c, f, v);
            if (parts is not null) contents.Add((c.Locale, parts));
        }
        return v.IsValid ? new CompiledTemplate(template.Channel, contents) : null;
    }

    private static bool IsLocale(string s) =>
        s.Length is >= 2 and <= 35 && s.All(ch => char.IsAsciiLetterOrDigit(ch) || ch == '-') && char.IsAsciiLetter(s[0]);

    private static Parts? CompileParts(string channel, TemplateContent c, string f, Validation v)
    {
        var expected = channel switch
        {
            "email" => TemplateContent.ContentOneofCase.Email,
            "sms" => TemplateContent.ContentOneofCase.Sms,
            "push" => TemplateContent.ContentOneofCase.Push,
            _ => TemplateContent.ContentOneofCase.Kakao,
        };
        if (c.ContentCase != expected)
        {
            v.Add($"{f}.{channel}", $"is required: a {channel} template's contents carry {channel} parts");
            return null;
        }
        var before = v.Violations.Count;
        var parts = new Parts();
        switch (channel)
        {
            case "email":
                if (c.Email.Subject.Trim().Length == 0) v.Add($"{f}.email.subject", "is required");
                if (c.Email.HtmlBody.Length == 0 && c.Email.TextBody.Length == 0) v.Add($"{f}.email.html_body", "html_body or text_body is required");
                parts.Subject = TemplateRenderer.Parse(c.Email.Subject, $"{f}.email.subject", v);
                parts.Html = c.Email.HtmlBody.Length == 0 ? null : TemplateRenderer.Parse(c.Email.HtmlBody, $"{f}.email.html_body", v);
                parts.Text = c.Email.TextBody.Length == 0 ? null : TemplateRenderer.Parse(c.Email.TextBody, $"{f}.email.text_body", v);
                break;
            case "sms":
                if (c.Sms.Text.Trim().Length == 0) v.Add($"{f}.sms.text", "is required");
                parts.Text = TemplateRenderer.Parse(c.Sms.Text, $"{f}.sms.text", v);
                break;
            case "push":
                if (c.Push.Title.Length == 0 && c.Push.Body.Length == 0) v.Add($"{f}.push.body", "title or body is required");
                parts.Subject = TemplateRenderer.Parse(c.Push.Title, $"{f}.push.title", v);
                parts.Text = TemplateRenderer.Parse(c.Push.Body, $"{f}.push.body", v);
                foreach (var (key, value) in c.Push.Data)
                    if (TemplateRenderer.Parse(value, $"{f}.push.data[{key}]", v) is { } t) parts.Map[key] = t;
                break;
            default:
                if (c.Kakao.TemplateCode.Trim().Length is 0 or > 100) v.Add($"{f}.kakao.template_code", "is required (up to 100 characters): the code registered with the provider");
                parts.Code = c.Kakao.TemplateCode.Trim();
                foreach (var (key, value) in c.Kakao.Variables)
                    if (TemplateRenderer.Parse(value, $"{f}.kakao.variables[{key}]", v) is { } t) parts.Map[key] = t;
                break;
        }
        return v.Violations.Count == before ? parts : null;
    }

    /// <summary>The content for a locale, with the fallback described on the class.</summary>
    public (string Locale, Parts Parts) Pick(string? locale, string defaultLocale) =>
        Find(locale) ?? Find(defaultLocale) ?? _contents[0];

    private (string, Parts)? Find(string? locale)
    {
        if (string.IsNullOrEmpty(locale)) return null;
        foreach (var c in _contents)
            if (string.Equals(c.Locale, locale, StringComparison.OrdinalIgnoreCase)) return c;
        var language = locale.Split('-')[0];
        foreach (var c in _contents)
            if (string.Equals(c.Locale.Split('-')[0], language, StringComparison.OrdinalIgnoreCase)) return c;
        return null;
    }

    /// <summary>Renders one content's parts for one model.</summary>
    public static async ValueTask<RenderedMessage> RenderAsync(string channel, Parts parts, IReadOnlyDictionary<string, FluidValue> model)
    {
        var r = new RenderedMessage();
        switch (channel)
        {
            case "email":
                r.Subject = parts.Subject is null ? "" : (await TemplateRenderer.RenderAsync(parts.Subject, model, html: false)).Trim();
                if (parts.Html is not null) r.HtmlBody = await TemplateRenderer.RenderAsync(parts.Html, model, html: true);
                if (parts.Text is not null) r.TextBody = await TemplateRenderer.RenderAsync(parts.Text, model, html: false);
                break;
            case "sms":
                r.SmsText = (await TemplateRenderer.RenderAsync(parts.Text!, model, html: false)).Trim();
                break;
            case "push":
                if (parts.Subject is not null) r.PushTitle = await TemplateRenderer.RenderAsync(parts.Subject, model, html: false);
                if (parts.Text is not null) r.PushBody = await TemplateRenderer.RenderAsync(parts.Text, model, html: false);
                foreach (var (key, t) in parts.Map) r.PushData[key] = await TemplateRenderer.RenderAsync(t, model, html: false);
                break;
            default:
                r.KakaoTemplateCode = parts.Code;
                foreach (var (key, t) in parts.Map) r.KakaoVariables[key] = await TemplateRenderer.RenderAsync(t, model, html: false);
                break;
        }
        return r;
    }

    /// <summary>One locale's parsed parts. Email: Subject, Html, Text. SMS: Text. Push: Subject (title), Text (body), Map (data). Kakao: Code, Map (variables).</summary>
    public sealed class Parts
    {
        public IFluidTemplate? Subject { get; set; }
        public IFluidTemplate? Html { get; set; }
        public IFluidTemplate? Text { get; set; }
        public string Code { get; set; } = "";
        public Dictionary<string, IFluidTemplate> Map { get; } = new(StringComparer.Ordinal);
    }
}
