using Crm.Campaigns.Tests.Infrastructure;
using Crm.Campaigns.V1;
using Crm.Contracts.Delivery;

namespace Crm.Campaigns.Tests;

[Collection(CampaignsCollection.Name)]
public sealed class CancelTests(CampaignsFixture fx)
{
    [Fact]
    public async Task Should_stop_the_fan_out_withdraw_what_waits_and_drop_commands_still_on_the_bus()
    {
        var tenant = await fx.NewWorkspaceAsync();
        var contacts = await fx.NewContactsAsync(tenant, 300, ["vip"]);
        var segment = await fx.TagSegmentAsync(tenant, "vip", 300);
        var template = await fx.Client.CreateTemplateAsync(new CreateTemplateRequest
        {
            Template = new Template { Name = "t", Channel = "email", Contents = { new TemplateContent { Locale = "en", Email = new EmailContent { Subject = "s", TextBody = "b" } } } },
        }, fx.As(tenant));
        var campaign = await fx.Client.CreateCampaignAsync(new CreateCampaignRequest
        {
            Campaign = new Campaign { Name = "mistake", Purpose = "marketing", Channels = { "email" }, TemplateId = template.TemplateId, Audience = new Audience { SegmentIds = { segment } } },
        }, fx.As(tenant));
        var run = await fx.Client.StartCampaignAsync(new StartCampaignRequest { CampaignId = campaign.CampaignId }, fx.As(tenant));
        await CampaignsFixture.WaitUntilAsync(fx.ConnectionString, "SELECT count(*) FROM recipients WHERE tenant_id = @tenant AND status <> 'pending'", new { tenant }, 20);

        var cancelled = await fx.Client.CancelCampaignAsync(new CancelCampaignRequest { CampaignId = campaign.CampaignId, Reason = "wrong price" }, fx.As(tenant));
        Assert.Equal(CampaignStatus.Cancelled, cancelled.Status);

        // Every recipient ends with an outcome: sent before the cancel caught it, or cancelled; nobody twice.
        await CampaignsFixture.WaitUntilAsync(fx.ConnectionString,
            "SELECT count(*) FROM recipients WHERE tenant_id = @tenant AND status IN ('sent', 'cancelled', 'suppressed')", new { tenant }, 300);
        var final = await fx.Client.GetCampaignRunAsync(new GetCampaignRunRequest { CampaignId = campaign.CampaignId, RunId = run.RunId }, fx.As(tenant));
        Assert.Equal(RunStatus.Cancelled, final.Status);
        Assert.True(final.Progress.Cancelled > 0, final.Progress.ToString());
        Assert.Equal(300, final.Progress.Sent + final.Progress.Cancelled);
        var received = fx.EmailsTo(contacts);
        Assert.Equal(final.Progress.Sent, received.Count);
        Assert.All(received.Values, n => Assert.Equal(1, n));

        // A command of the campaign still on the bus after the cancel: Delivery suppresses it on arrival.
        var late = Guid.NewGuid();
        await fx.PublishAsync(new DeliverMessage(tenant, [new DeliveryRequest("late-" + late, contacts[0], "email", "marketing",
            CampaignId: campaign.CampaignId, Subject: "s", TextBody: "b")]));
        await CampaignsFixture.WaitUntilAsync(fx.DeliveryConnectionString,
            "SELECT count(*) FROM messages WHERE tenant_id = @tenant AND idempotency_key = @key AND status = 'suppressed' AND reason = 'cancelled: wrong price'",
            new { tenant, key = "late-" + late }, 1);
    }
}
