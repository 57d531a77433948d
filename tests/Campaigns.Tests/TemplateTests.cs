using Crm.Campaigns.Tests.Infrastructure;
using Crm.Campaigns.V1;
using Grpc.Core;

namespace Crm.Campaigns.Tests;

[Collection(CampaignsCollection.Name)]
public sealed class TemplateTests(CampaignsFixture fx)
{
    private static Template Email(string subject, string html, params (string Locale, string Subject, string Html)[] more)
    {
        var t = new Template { Name = "welcome", Channel = "email" };
        t.Contents.Add(new TemplateContent { Locale = "en", Email = new EmailContent { Subject = subject, HtmlBody = html } });
        foreach (var (locale, s, h) in more) t.Contents.Add(new TemplateContent { Locale = locale, Email = new EmailContent { Subject = s, HtmlBody = h } });
        return t;
    }

    [Fact]
    public async Task Should_refuse_a_template_that_does_not_parse_naming_the_field_line_and_column()
    {
        var tenant = CampaignsFixture.NewTenant();
        var bad = Email("Hello", "<p>Hi</p>\n<p>{% if contact.locale %}open", ("ko-KR", "안녕 {{ contact.external_id", "<p>ok</p>"));
        var e = await Assert.ThrowsAsync<RpcException>(() => fx.Client.CreateTemplateAsync(new CreateTemplateRequest { Template = bad }, fx.As(tenant)).ResponseAsync);
        var violations = Violations.Of(e);
        Assert.Matches(@"line 2, column \d+", violations["template.contents[0].email.html_body"]);
        Assert.Matches(@"line 1, column \d+", violations["template.contents[1].email.subject"]);
        // Nothing was saved.
        Assert.Empty((await fx.Client.ListTemplatesAsync(new ListTemplatesRequest(), fx.As(tenant))).Templates);
    }

    [Fact]
    public async Task Should_preview_with_the_contacts_model_html_encoded_in_its_locale_falling_back_to_the_workspace_default()
    {
        var tenant = await fx.NewWorkspaceAsync();
        var (ko, fr) = (await fx.NewContactsAsync(tenant, 1, ["p"], "ko-KR", """{"first_name": "<b>민준</b>", "joined": {"$date": "2024-03-01T00:00:00Z"}}"""),
                        await fx.NewContactsAsync(tenant, 1, ["p"], "fr-FR", """{"first_name": "Zoé"}"""));
        await fx.PublishAsync(new Crm.Contracts.Contacts.TransactionsRecorded(tenant, [
            new(ko[0], "o1", DateTimeOffset.Parse("2025-01-02T00:00:00Z"), "KRW", 30000m, "completed", [], ["shoes"]),
            new(ko[0], "o2", DateTimeOffset.Parse("2025-02-02T00:00:00Z"), "KRW", 12000m, "completed", [], ["shoes", "bags"]),
        ]));
        await CampaignsFixture.WaitUntilAsync(fx.ConnectionString, "SELECT count(*) FROM orders WHERE tenant_id = @tenant", new { tenant }, 2);
        var template = await fx.Client.CreateTemplateAsync(new CreateTemplateRequest
        {
            Template = Email("Hi {{ contact.attributes.first_name }}", "<p>{{ contact.attributes.first_name }}</p>",
                ("ko", "{{ contact.attributes.first_name }}님, {{ campaign.offer }}",
                 "<p>{{ contact.attributes.first_name }} {{ orders.count }} {{ orders.total_spent }} {{ orders.top_category }} {{ contact.attributes.joined | date: '%Y-%m' }} {{ contact.attributes.first_name | raw }}</p>")),
        }, fx.As(tenant));

        var preview = await fx.Client.PreviewTemplateAsync(new PreviewTemplateRequest
        {
            TemplateId = template.TemplateId, ContactId = ko[0].ToString(), CampaignData = { ["offer"] = "10% off" },
        }, fx.As(tenant));
        Assert.Equal("ko", preview.Locale);
        Assert.Equal("<b>민준</b>님, 10% off", preview.Rendered.Subject); // subjects are text, not HTML
        Assert.Equal("<p>&lt;b&gt;민준&lt;/b&gt; 2 42000 shoes 2024-03 <b>민준</b></p>", preview.Rendered.HtmlBody);

        // fr-FR has no content: the workspace's default locale (en unless set) is used.
        var fallback = await fx.Client.PreviewTemplateAsync(new PreviewTemplateRequest { TemplateId = template.TemplateId, ContactId = fr[0].ToString() }, fx.As(tenant));
        Assert.Equal(("en", "Hi Zoé"), (fallback.Locale, fallback.Rendered.Subject));
        await fx.Client.UpdateCampaignSettingsAsync(new UpdateCampaignSettingsRequest { Settings = new CampaignSettings { DefaultLocale = "ko-KR" } }, fx.As(tenant));
        fallback = await fx.Client.PreviewTemplateAsync(new PreviewTemplateRequest { TemplateId = template.TemplateId, ContactId = fr[0].ToString() }, fx.As(tenant));
        Assert.Equal("ko", fallback.Locale);
    }

    [Fact]
    public async Task Should_show_sms_segments_and_the_advertising_form_delivery_will_add()
    {
        var tenant = await fx.NewWorkspaceAsync();
        var sms = new Template { Name = "sms", Channel = "sms" };
        sms.Contents.Add(new TemplateContent { Locale = "ko", Sms = new SmsContent { Text = "{{ campaign.offer }} 쿠폰이 도착했어요" } });
        var contact = Guid.NewGuid().ToString();
        var marketing = await fx.Client.PreviewTemplateAsync(new PreviewTemplateRequest { Template = sms, ContactId = contact, CampaignData = { ["offer"] = "10%" } }, fx.As(tenant));
        Assert.Equal("(광고)데모상점\n10% 쿠폰이 도착했어요\n무료수신거부 080-123-4567", marketing.Sms.Text);
        Assert.True(marketing.Sms.AdvertisingForm);
        Assert.Equal(("UCS-2", 1), (marketing.Sms.Encoding, marketing.Sms.Segments));

        sms.Contents[0].Sms.Text = string.Concat(Enumerable.Repeat("Hello {{ campaign.offer }} ", 17));
        var transactional = await fx.Client.PreviewTemplateAsync(new PreviewTemplateRequest
        {
            Template = sms, ContactId = contact, Purpose = "transactional", CampaignData = { ["offer"] = "10%" },
        }, fx.As(tenant));
        Assert.False(transactional.Sms.AdvertisingForm);
        Assert.Equal(("GSM-7", 2, 169), (transactional.Sms.Encoding, transactional.Sms.Segments, transactional.Sms.Characters));
    }

    [Fact]
    public async Task Should_stop_a_template_that_loops_too_long_and_reach_nothing_but_the_model()
    {
        var tenant = CampaignsFixture.NewTenant();
        var e = await Assert.ThrowsAsync<RpcException>(() => fx.Client.PreviewTemplateAsync(new PreviewTemplateRequest
        {
            Template = Email("x", "{% for i in (1..100000) %}{{ i }}{% endfor %}"), ContactId = Guid.NewGuid().ToString(),
        }, fx.As(tenant)).ResponseAsync);
        Assert.Contains("steps", Violations.Of(e)["template"]);
        // No file system, no .NET members: include finds nothing, a value's CLR members are not readable.
        var preview = await fx.Client.PreviewTemplateAsync(new PreviewTemplateRequest
        {
            Template = Email("[{{ contact.id.Length }}][{{ campaign.GetType }}]", "x"), ContactId = Guid.NewGuid().ToString(),
        }, fx.As(tenant));
        Assert.Equal("[][]", preview.Rendered.Subject);
    }
}
