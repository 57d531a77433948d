using Crm.Campaigns.Features.Schedule;
using Crm.Campaigns.Tests.Infrastructure;
using Crm.Campaigns.V1;
using Dapper;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Npgsql;

namespace Crm.Campaigns.Tests.Schedule;

[Collection(CampaignsCollection.Name)]
public sealed class ScheduleTests(CampaignsFixture fixture) : IAsyncLifetime
{
    public Task InitializeAsync() => Task.CompletedTask;

    public Task DisposeAsync()
    {
        fixture.Clock.Set(DateTimeOffset.UtcNow);  // other tests of the collection run on the real time
        return Task.CompletedTask;
    }

    private async Task<Guid> DraftAsync(string tenant)
    {
        var id = Guid.NewGuid();
        await using var conn = new NpgsqlConnection(fixture.ConnectionString);
        await conn.ExecuteAsync("""
            INSERT INTO campaigns (tenant_id, campaign_id, name, channels, purpose, created_at, updated_at)
            VALUES (@tenant, @id, 'Scheduled', '{email}', 'marketing', now(), now())
            """, new { tenant, id });
        return id;
    }

    private Task<long> RunsAsync(Guid campaignId) =>
        fixture.QueryScalarAsync<long>("SELECT count(*) FROM campaign_runs WHERE campaign_id = @campaignId", new { campaignId });

    /// <summary>Proves the scheduler has passed since now: a campaign due at once gets its run.</summary>
    private async Task SchedulerPassedAsync(string tenant)
    {
        var marker = await DraftAsync(tenant);
        await fixture.Client.ScheduleCampaignAsync(new ScheduleCampaignRequest
        {
            CampaignId = marker.ToString(), Schedule = new V1.Schedule { Kind = ScheduleKind.Now },
        }, fixture.As(tenant, "campaigns.send"));
        await CampaignsFixture.WaitUntilAsync(fixture.ConnectionString, "SELECT count(*) FROM campaign_runs WHERE campaign_id = @marker", new { marker }, 1);
    }

    /// <summary>
    /// The campaign's run once the run worker is done with it (these campaigns have no segment: an empty audience),
    /// so that the recipients written here stand for what the snapshot writes without the fan-out taking them.
    /// </summary>
    private async Task<Guid> SettledRunAsync(Guid campaign)
    {
        await CampaignsFixture.WaitUntilAsync(fixture.ConnectionString,
            "SELECT count(*) FROM campaign_runs WHERE campaign_id = @campaign AND status NOT IN ('pending', 'snapshotting', 'sending')", new { campaign }, 1);
        return await fixture.QueryScalarAsync<Guid>("SELECT run_id FROM campaign_runs WHERE campaign_id = @campaign", new { campaign });
    }

    [Fact]
    public async Task Should_send_in_each_contacts_local_time_across_three_zones_not_before()
    {
        var tenant = CampaignsFixture.NewTenant();
        // 2030-01-15 09:00 local is 00:00Z in Seoul, 08:00Z in Berlin, 17:00Z in Los Angeles; the run is due when
        // the first zone on Earth (UTC+14) gets there: 2030-01-14 19:00Z.
        var seoul = new DateTimeOffset(2030, 1, 15, 0, 0, 0, TimeSpan.Zero);
        var berlin = seoul.AddHours(8);
        var losAngeles = seoul.AddHours(17);
        fixture.Clock.Set(new DateTimeOffset(2030, 1, 14, 18, 0, 0, TimeSpan.Zero));
        var campaign = await DraftAsync(tenant);
        var contacts = new Dictionary<Guid, string?>
        {
            [Guid.NewGuid()] = "Asia/Seoul", [Guid.NewGuid()] = "Asia/Seoul", [Guid.NewGuid()] = "Europe/Berlin",
            [Guid.NewGuid()] = "America/Los_Angeles", [Guid.NewGuid()] = null, [Guid.NewGuid()] = "Not/AZone",
        };
        await using var conn = new NpgsqlConnection(fixture.ConnectionString);
        await conn.ExecuteAsync("""
            INSERT INTO campaign_settings (tenant_id, default_time_zone, updated_at) VALUES (@tenant, 'America/Los_Angeles', now());
            INSERT INTO contacts (tenant_id, contact_id, time_zone) SELECT @tenant, c, z FROM unnest(@ids, @zones) AS x(c, z);
            """, new { tenant, ids = contacts.Keys.ToArray(), zones = contacts.Values.ToArray() });

        var scheduled = await fixture.Client.ScheduleCampaignAsync(new ScheduleCampaignRequest
        {
            CampaignId = campaign.ToString(),
            Schedule = new V1.Schedule { Kind = ScheduleKind.LocalTime, LocalDate = "2030-01-15", LocalTime = "09:00", PastZonePolicy = PastZonePolicy.Skip },
        }, fixture.As(tenant, "campaigns.send"));
        Assert.Equal(CampaignStatus.Scheduled, scheduled.Status);

        // Before the first zone's time: no run.
        await SchedulerPassedAsync(tenant);
        Assert.Equal(0, await RunsAsync(campaign));

        fixture.Clock.Set(new DateTimeOffset(2030, 1, 14, 19, 0, 1, TimeSpan.Zero));
        await CampaignsFixture.WaitUntilAsync(fixture.ConnectionString, "SELECT count(*) FROM campaign_runs WHERE campaign_id = @campaign", new { campaign }, 1);
        var runId = await SettledRunAsync(campaign);
        Assert.Equal(new DateTime(2030, 1, 14, 19, 0, 0), await fixture.QueryScalarAsync<DateTime>(
            "SELECT scheduled_for AT TIME ZONE 'UTC' FROM campaign_runs WHERE run_id = @runId", new { runId }));

        // The snapshot writes the recipients and gives each the instant of 09:00 in their zone.
        await conn.ExecuteAsync("INSERT INTO recipients (tenant_id, run_id, contact_id, campaign_id) SELECT @tenant, @runId, c, @campaign FROM unnest(@ids) c",
            new { tenant, runId, campaign, ids = contacts.Keys.ToArray() });
        await conn.OpenAsync();
        await using (var tx = await conn.BeginTransactionAsync())
        {
            await LocalSendTimes.ApplyAsync(conn, tx, tenant, runId, fixture.Clock.GetUtcNow(), CancellationToken.None);
            await tx.CommitAsync();
        }
        var sendAt = (await conn.QueryAsync<(Guid Contact, DateTime? At, string Status)>(
            "SELECT contact_id, send_at, status FROM recipients WHERE run_id = @runId", new { runId })).ToDictionary(r => r.Contact);
        DateTimeOffset Expected(string? zone) => zone switch
        {
            "Asia/Seoul" => seoul, "Europe/Berlin" => berlin, _ => losAngeles,  // none, or unknown: the workspace's (Los Angeles)
        };
        foreach (var (contact, zone) in contacts)
        {
            Assert.Equal("pending", sendAt[contact].Status);
            Assert.Equal(Expected(zone).UtcDateTime, DateTime.SpecifyKind(sendAt[contact].At!.Value, DateTimeKind.Utc).ToUniversalTime());
        }
    }

    [Fact]
    public async Task Should_skip_or_send_at_once_a_zone_whose_local_time_has_passed()
    {
        var tenant = CampaignsFixture.NewTenant();
        // 2030-01-15 10:00Z: 09:00 has passed in Seoul (00:00Z) and Berlin (08:00Z), not in Los Angeles (17:00Z).
        var now = new DateTimeOffset(2030, 1, 15, 10, 0, 0, TimeSpan.Zero);
        fixture.Clock.Set(now);
        var seoul = Guid.NewGuid();
        var berlin = Guid.NewGuid();
        var la = Guid.NewGuid();
        await using var conn = new NpgsqlConnection(fixture.ConnectionString);
        await conn.ExecuteAsync("INSERT INTO contacts (tenant_id, contact_id, time_zone) SELECT @tenant, c, z FROM unnest(@ids, @zones) AS x(c, z)",
            new { tenant, ids = new[] { seoul, berlin, la }, zones = new[] { "Asia/Seoul", "Europe/Berlin", "America/Los_Angeles" } });
        await conn.OpenAsync();
        foreach (var policy in new[] { PastZonePolicy.Skip, PastZonePolicy.SendNow })
        {
            var campaign = await DraftAsync(tenant);
            await fixture.Client.ScheduleCampaignAsync(new ScheduleCampaignRequest
            {
                CampaignId = campaign.ToString(),
                Schedule = new V1.Schedule { Kind = ScheduleKind.LocalTime, LocalDate = "2030-01-15", LocalTime = "09:00", PastZonePolicy = policy },
            }, fixture.As(tenant, "campaigns.send"));
            await CampaignsFixture.WaitUntilAsync(fixture.ConnectionString, "SELECT count(*) FROM campaign_runs WHERE campaign_id = @campaign", new { campaign }, 1);
            var runId = await SettledRunAsync(campaign);
            await conn.ExecuteAsync("INSERT INTO recipients (tenant_id, run_id, contact_id, campaign_id) SELECT @tenant, @runId, c, @campaign FROM unnest(@ids) c",
                new { tenant, runId, campaign, ids = new[] { seoul, berlin, la } });
            await using (var tx = await conn.BeginTransactionAsync())
            {
                await LocalSendTimes.ApplyAsync(conn, tx, tenant, runId, now, CancellationToken.None);
                await tx.CommitAsync();
            }
            var r = (await conn.QueryAsync<(Guid Contact, DateTime? At, string Status, string? Reason)>(
                "SELECT contact_id, send_at, status, reason FROM recipients WHERE run_id = @runId", new { runId })).ToDictionary(x => x.Contact);
            Assert.Equal(new DateTime(2030, 1, 15, 17, 0, 0), r[la].At!.Value.ToUniversalTime());
            Assert.Equal("pending", r[la].Status);
            foreach (var passed in new[] { seoul, berlin })
            {
                Assert.Null(r[passed].At);  // no wait: sent at once, or not at all
                Assert.Equal(policy == PastZonePolicy.Skip ? ("skipped", "local_time_passed") : ("pending", null), (r[passed].Status, r[passed].Reason));
            }
        }
    }

    [Fact]
    public async Task Should_create_a_run_for_each_cron_occurrence_in_the_campaigns_time_zone()
    {
        var tenant = CampaignsFixture.NewTenant();
        // Mondays 09:00 in Seoul = Mondays 00:00Z. 2030-01-13 is a Sunday.
        fixture.Clock.Set(new DateTimeOffset(2030, 1, 13, 12, 0, 0, TimeSpan.Zero));
        var campaign = await DraftAsync(tenant);
        await fixture.Client.ScheduleCampaignAsync(new ScheduleCampaignRequest
        {
            CampaignId = campaign.ToString(),
            Schedule = new V1.Schedule { Kind = ScheduleKind.Recurring, Cron = "0 9 * * MON", TimeZone = "Asia/Seoul" },
        }, fixture.As(tenant, "campaigns.send"));
        Assert.Equal(new DateTime(2030, 1, 14, 0, 0, 0), await fixture.QueryScalarAsync<DateTime>(
            "SELECT next_run_at AT TIME ZONE 'UTC' FROM campaigns WHERE campaign_id = @campaign", new { campaign }));
        await SchedulerPassedAsync(tenant);
        Assert.Equal(0, await RunsAsync(campaign));

        fixture.Clock.Set(new DateTimeOffset(2030, 1, 14, 0, 0, 1, TimeSpan.Zero));
        await CampaignsFixture.WaitUntilAsync(fixture.ConnectionString, "SELECT count(*) FROM campaign_runs WHERE campaign_id = @campaign", new { campaign }, 1);
        fixture.Clock.Set(new DateTimeOffset(2030, 1, 21, 0, 0, 1, TimeSpan.Zero));
        await CampaignsFixture.WaitUntilAsync(fixture.ConnectionString, "SELECT count(*) FROM campaign_runs WHERE campaign_id = @campaign", new { campaign }, 2);
        await SchedulerPassedAsync(tenant);
        await using var conn = new NpgsqlConnection(fixture.ConnectionString);
        var runs = (await conn.QueryAsync<DateTime>(
            "SELECT scheduled_for AT TIME ZONE 'UTC' FROM campaign_runs WHERE campaign_id = @campaign ORDER BY scheduled_for", new { campaign })).ToList();
        Assert.Equal([new DateTime(2030, 1, 14, 0, 0, 0), new DateTime(2030, 1, 21, 0, 0, 0)], runs);
        Assert.Equal(new DateTime(2030, 1, 28, 0, 0, 0), await fixture.QueryScalarAsync<DateTime>(
            "SELECT next_run_at AT TIME ZONE 'UTC' FROM campaigns WHERE campaign_id = @campaign", new { campaign }));
    }

    [Fact]
    public async Task Should_refuse_a_bad_schedule_naming_the_field()
    {
        var tenant = CampaignsFixture.NewTenant();
        var campaign = await DraftAsync(tenant);
        async Task<string> Field(V1.Schedule s)
        {
            var e = await Assert.ThrowsAsync<RpcException>(() => fixture.Client.ScheduleCampaignAsync(
                new ScheduleCampaignRequest { CampaignId = campaign.ToString(), Schedule = s }, fixture.As(tenant, "campaigns.send")).ResponseAsync);
            Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
            return e.GetRpcStatus()!.GetDetail<Google.Rpc.BadRequest>()!.FieldViolations[0].Field;
        }
        Assert.Equal("schedule.cron", await Field(new V1.Schedule { Kind = ScheduleKind.Recurring, Cron = "every monday", TimeZone = "Asia/Seoul" }));
        Assert.Equal("schedule.time_zone", await Field(new V1.Schedule { Kind = ScheduleKind.Recurring, Cron = "0 9 * * *", TimeZone = "Mars/Olympus" }));
        Assert.Equal("schedule.local_time", await Field(new V1.Schedule { Kind = ScheduleKind.LocalTime, LocalDate = "2030-01-01", LocalTime = "25:00" }));
        Assert.Equal("schedule.send_time", await Field(new V1.Schedule { Kind = ScheduleKind.At, SendTime = Timestamp.FromDateTimeOffset(DateTimeOffset.UtcNow.AddDays(-2)) }));
        var other = await Assert.ThrowsAsync<RpcException>(() => fixture.Client.ScheduleCampaignAsync(
            new ScheduleCampaignRequest { CampaignId = campaign.ToString() }, fixture.As(CampaignsFixture.NewTenant(), "campaigns.send")).ResponseAsync);
        Assert.Equal(StatusCode.NotFound, other.StatusCode);
    }
}
