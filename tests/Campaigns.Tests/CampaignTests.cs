using Crm.BuildingBlocks.Tenancy;
using Crm.Campaigns.Tests.Infrastructure;
using Crm.Campaigns.V1;
using Crm.Segmentation.V1;
using Crm.TestSupport;
using Grpc.Core;

namespace Crm.Campaigns.Tests;

[Collection(CampaignsCollection.Name)]
public sealed class CampaignTests(CampaignsFixture fx)
{
    private async Task<string> EmailTemplateAsync(string tenant) =>
        (await fx.Client.CreateTemplateAsync(new CreateTemplateRequest
        {
            Template = new Template
            {
                Name = "offer", Channel = "email",
                Contents = { new TemplateContent { Locale = "ko", Email = new EmailContent { Subject = "{{ campaign.name }}", TextBody = "안녕하세요 {{ contact.external_id }}" } } },
            },
        }, fx.As(tenant))).TemplateId;

    private async Task<Campaign> CampaignAsync(string tenant, string templateId, string[] segments, params string[] exclusions) =>
        await fx.Client.CreateCampaignAsync(new CreateCampaignRequest
        {
            Campaign = new Campaign
            {
                Name = "spring sale", Purpose = "marketing", Category = "promotions", Channels = { "email" }, TemplateId = templateId,
                Audience = new Audience { SegmentIds = { segments }, ExclusionSegmentIds = { exclusions } },
            },
        }, fx.As(tenant));

    [Fact]
    public async Task Should_reach_exactly_the_segments_minus_the_exclusions_once_each()
    {
        var tenant = await fx.NewWorkspaceAsync();
        var vips = await fx.NewContactsAsync(tenant, 30, ["vip"]);
        var fans = await fx.NewContactsAsync(tenant, 20, ["fan"]);
        var both = await fx.NewContactsAsync(tenant, 10, ["vip", "fan"]);
        var excluded = await fx.NewContactsAsync(tenant, 15, ["vip", "complained"]);
        var others = await fx.NewContactsAsync(tenant, 10, ["other"]);
        var vip = await fx.TagSegmentAsync(tenant, "vip", 55);
        var fan = await fx.TagSegmentAsync(tenant, "fan", 30);
        var complained = await fx.TagSegmentAsync(tenant, "complained", 15);
        var campaign = await CampaignAsync(tenant, await EmailTemplateAsync(tenant), [vip, fan], complained);

        var run = await fx.Client.StartCampaignAsync(new StartCampaignRequest { CampaignId = campaign.CampaignId }, fx.As(tenant, Scope.CampaignsSend, Scope.CampaignsRead));
        var finished = await fx.WaitFinishedAsync(tenant, campaign.CampaignId, run.RunId);

        var eligible = vips.Concat(fans).Concat(both).ToArray();
        Assert.Equal(RunStatus.Finished, finished.Status);
        Assert.Equal((60, 60, 60, 0L), (finished.Progress.Audience, finished.Progress.Enqueued, finished.Progress.Sent, finished.Progress.Pending));
        var received = fx.EmailsTo(eligible.Concat(excluded).Concat(others));
        Assert.Equal(eligible.Select(CampaignsFixture.Address).Order(), received.Keys.Order());
        Assert.All(received.Values, n => Assert.Equal(1, n));
        // The fixture's workspace is Korean: a marketing email carries the advertising form.
        Assert.Equal("(광고)spring sale", fx.Smtp.Messages.First(m => m.Recipients.Contains(CampaignsFixture.Address(vips[0]))).Subject);
        Assert.Equal(CampaignStatus.Completed, (await fx.Client.GetCampaignAsync(new GetCampaignRequest { CampaignId = campaign.CampaignId }, fx.As(tenant))).Status);

        // A second run of the same campaign sends to nobody already sent to.
        var again = await fx.Client.StartCampaignAsync(new StartCampaignRequest { CampaignId = campaign.CampaignId }, fx.As(tenant));
        var second = await fx.WaitFinishedAsync(tenant, campaign.CampaignId, again.RunId);
        Assert.Equal(0, second.Progress.Audience);
    }

    [Fact]
    public async Task Should_send_each_eligible_contact_once_when_paused_and_resumed_20_times_during_the_send()
    {
        var tenant = await fx.NewWorkspaceAsync();
        var contacts = await fx.NewContactsAsync(tenant, 600, ["vip"]);
        var segment = await fx.TagSegmentAsync(tenant, "vip", 600);
        var campaign = await CampaignAsync(tenant, await EmailTemplateAsync(tenant), [segment]);

        var run = await fx.Client.StartCampaignAsync(new StartCampaignRequest { CampaignId = campaign.CampaignId }, fx.As(tenant));
        const string handedOver = "SELECT count(*) FROM recipients WHERE tenant_id = @tenant AND enqueued_at IS NOT NULL";
        await CampaignsFixture.WaitUntilAsync(fx.ConnectionString, handedOver, new { tenant }, 1);
        var pausedMidway = 0;
        for (var i = 0; i < 20; i++)
        {
            await fx.Client.PauseCampaignAsync(new PauseCampaignRequest { CampaignId = campaign.CampaignId }, fx.As(tenant));
            var progress = (await fx.Client.GetCampaignRunAsync(new GetCampaignRunRequest { CampaignId = campaign.CampaignId, RunId = run.RunId }, fx.As(tenant))).Progress;
            if (progress.Pending > 0) pausedMidway++;
            await fx.Client.ResumeCampaignAsync(new ResumeCampaignRequest { CampaignId = campaign.CampaignId }, fx.As(tenant));
            // Let the fan-out move on by at least a page before the next pause.
            if (progress.Pending > 0) await CampaignsFixture.WaitUntilAsync(fx.ConnectionString, handedOver, new { tenant }, progress.Enqueued + 1);
        }
        var finished = await fx.WaitFinishedAsync(tenant, campaign.CampaignId, run.RunId);

        Assert.True(pausedMidway >= 10, $"only {pausedMidway} of 20 pauses fell in the middle of the fan-out");
        Assert.Equal((600L, 600L), (finished.Progress.Sent, finished.Progress.Enqueued));
        var received = fx.EmailsTo(contacts);
        Assert.Equal(600, received.Count);
        Assert.Equal(0, received.Values.Count(n => n > 1));
        Assert.Equal(600L, await CampaignsFixture.QueryScalarAsync<long>(fx.DeliveryConnectionString,
            "SELECT count(*) FROM messages WHERE tenant_id = @tenant AND campaign_id = @campaign", new { tenant, campaign = campaign.CampaignId }));
    }

    [Fact]
    public async Task Should_refuse_another_workspaces_campaigns_and_templates()
    {
        var owner = CampaignsFixture.NewTenant();
        var other = CampaignsFixture.NewTenant();
        var template = await EmailTemplateAsync(owner);
        var campaign = await CampaignAsync(owner, template, [Guid.NewGuid().ToString()]);

        async Task NotFound(Func<Task> call) => Assert.Equal(StatusCode.NotFound, (await Assert.ThrowsAsync<RpcException>(call)).StatusCode);
        await NotFound(() => fx.Client.GetCampaignAsync(new GetCampaignRequest { CampaignId = campaign.CampaignId }, fx.As(other)).ResponseAsync);
        await NotFound(() => fx.Client.StartCampaignAsync(new StartCampaignRequest { CampaignId = campaign.CampaignId }, fx.As(other)).ResponseAsync);
        await NotFound(() => fx.Client.CancelCampaignAsync(new CancelCampaignRequest { CampaignId = campaign.CampaignId }, fx.As(other)).ResponseAsync);
        await NotFound(() => fx.Client.GetTemplateAsync(new GetTemplateRequest { TemplateId = template }, fx.As(other)).ResponseAsync);
        Assert.Empty((await fx.Client.ListCampaignsAsync(new ListCampaignsRequest(), fx.As(other))).Campaigns);
        // Another workspace's template cannot be used either.
        var e = await Assert.ThrowsAsync<RpcException>(() => CampaignAsync(other, template, [Guid.NewGuid().ToString()]));
        Assert.Contains("does not exist", Violations.Of(e)["campaign.template_id"]);
        // And a token without the scope is refused.
        var denied = await Assert.ThrowsAsync<RpcException>(() =>
            fx.Client.StartCampaignAsync(new StartCampaignRequest { CampaignId = campaign.CampaignId }, fx.As(owner, Scope.CampaignsRead, Scope.CampaignsWrite)).ResponseAsync);
        Assert.Equal(StatusCode.PermissionDenied, denied.StatusCode);
    }

    [Fact]
    public async Task Should_refuse_a_campaign_with_bad_fields_naming_each()
    {
        var tenant = CampaignsFixture.NewTenant();
        var e = await Assert.ThrowsAsync<RpcException>(() => fx.Client.CreateCampaignAsync(new CreateCampaignRequest
        {
            Campaign = new Campaign
            {
                Name = "", Purpose = "spam", Channels = { "email", "fax" }, HoldoutShare = 0.9,
                Audience = new Audience { SegmentIds = { "not-a-uuid" } },
                Variants = { new Variant { VariantId = "a", Weight = 0, TemplateId = Guid.NewGuid().ToString() } },
                Schedule = new Crm.Campaigns.V1.Schedule { Kind = ScheduleKind.LocalTime, LocalTime = "25:00" },
            },
        }, fx.As(tenant)).ResponseAsync);
        var v = Violations.Of(e);
        foreach (var field in new[] { "campaign.name", "campaign.purpose", "campaign.channels[1]", "campaign.holdout_share", "campaign.audience.segment_ids[0]",
                                      "campaign.variants[0].weight", "campaign.schedule.local_date", "campaign.schedule.local_time" })
            Assert.True(v.ContainsKey(field), $"{field} not named: {string.Join("; ", v.Keys)}");
    }

    [Fact]
    public async Task Should_let_campaigns_workload_key_read_segments_but_not_claim_more()
    {
        var tenant = CampaignsFixture.NewTenant();
        var workload = fx.WorkloadKeys.Issuer();
        CallOptions As(params string[] scopes) => new(new Metadata { { "authorization", "Bearer " + workload.Issue(tenant, scopes) } });

        await fx.Segments.ListSegmentsAsync(new ListSegmentsRequest(), As(Scope.SegmentsRead));
        foreach (var scopes in new[] { new[] { Scope.SegmentsRead, Scope.ContactsWrite }, [Scope.All], [Scope.SegmentsWrite] })
        {
            var e = await Assert.ThrowsAsync<RpcException>(() => fx.Segments.ListSegmentsAsync(new ListSegmentsRequest(), As(scopes)).ResponseAsync);
            Assert.Equal(StatusCode.Unauthenticated, e.StatusCode);
        }
        // The test issuer's key (no allow-list) still claims anything.
        await fx.Segments.ListSegmentsAsync(new ListSegmentsRequest(), fx.Segmentation.As(tenant, Scope.All));
    }
}
