using Crm.BuildingBlocks.Tenancy;
using Crm.Contracts.Contacts;
using Crm.Contracts.Segmentation;
using Crm.Segmentation.Tests.Infrastructure;
using Crm.Segmentation.V1;
using Grpc.Core;

namespace Crm.Segmentation.Tests;

/// <summary>Materialised membership: what moves it, what is published, and the calls around it.</summary>
[Collection(SegmentationCollection.Name)]
public sealed class SegmentMembershipTests(SegmentationFixture fx)
{
    private const string BoughtOptedInNoClick = """
        {"all": [
          {"purchases": {"measure": "PURCHASE_MEASURE_COUNT", "window": {"lastDays": 30}}},
          {"reachability": {"channel": "CHANNEL_EMAIL", "purpose": "PURPOSE_MARKETING", "state": "REACHABILITY_OPTED_IN"}},
          {"engagement": {"kind": "ENGAGEMENT_KIND_CLICKED", "window": {"lastDays": 30}, "count": {"max": 0}}}
        ]}
        """;

    [Fact]
    public async Task Should_move_membership_when_an_order_an_engagement_event_a_consent_change_and_an_erasure_arrive()
    {
        var tenant = SegmentationFixture.NewTenant();
        var now = fx.Clock.GetUtcNow();
        var (x, y, z) = (Guid.NewGuid(), Guid.NewGuid(), Guid.NewGuid());
        foreach (var c in new[] { x, y, z })
        {
            await fx.PublishAsync(new ContactUpserted(tenant, c, c.ToString("N")[..8], $"{c:N}@example.kr", null, null, null, [], "{}", false, now));
            await fx.PublishAsync(new ConsentChanged(tenant, c, "email", "marketing", "opted_in", "form", now, now));
        }
        await fx.WaitUntilAsync("SELECT count(*) FROM consents WHERE tenant_id = @tenant", new { tenant }, 3);
        var segment = await Segs.CreateAsync(fx, tenant, "Bought, opted in, no click", BoughtOptedInNoClick);
        Assert.Equal(0, segment.MemberCount);
        var id = Guid.Parse(segment.SegmentId);

        // An order: all three enter.
        await fx.PublishAsync(new TransactionsRecorded(tenant, [
            new RecordedOrder(x, "o-x", now, "KRW", 10m, "completed", [], []),
            new RecordedOrder(y, "o-y", now, "KRW", 10m, "completed", [], []),
            new RecordedOrder(z, "o-z", now, "KRW", 10m, "completed", [], []),
        ]));
        await EnteredAsync(id, x, y, z);

        // A click: x leaves.
        await fx.PublishAsync(new EngagementRecorded(tenant, [new RecordedEngagement("click-x", x, "clicked", null, "email", null, null, now.AddSeconds(1))]));
        await LeftAsync(id, x);

        // An opt-out: y leaves.
        await fx.PublishAsync(new ConsentChanged(tenant, y, "email", "marketing", "opted_out", "unsubscribe_link", now.AddSeconds(1), null));
        await LeftAsync(id, y);

        // An erasure: z leaves.
        await fx.PublishAsync(new ContactErased(tenant, z, now.AddSeconds(1)));
        await LeftAsync(id, z);

        await fx.WaitRefreshedAsync(tenant);
        Assert.Empty(await Segs.MembersAsync(fx, tenant, segment.SegmentId));
        var after = await fx.Client.GetSegmentAsync(new GetSegmentRequest { SegmentId = segment.SegmentId }, fx.As(tenant));
        Assert.Equal(0, after.MemberCount);
        Assert.True(after.EvaluatedAt.ToDateTimeOffset() > segment.EvaluatedAt.ToDateTimeOffset());
    }

    [Fact]
    public async Task Should_evaluate_on_create_and_on_a_rule_change_publishing_who_entered_and_left()
    {
        var tenant = SegmentationFixture.NewTenant();
        var now = fx.Clock.GetUtcNow();
        var (p, q, r) = (Guid.NewGuid(), Guid.NewGuid(), Guid.NewGuid());
        await fx.PublishAsync(new ContactUpserted(tenant, p, "p", null, null, null, null, ["vip"], "{}", false, now));
        await fx.PublishAsync(new ContactUpserted(tenant, q, "q", null, null, null, null, ["vip"], "{}", false, now));
        await fx.PublishAsync(new ContactUpserted(tenant, r, "r", null, null, null, null, [], "{}", false, now));
        await fx.WaitUntilAsync("SELECT count(*) FROM contacts WHERE tenant_id = @tenant", new { tenant }, 3);

        var created = await Segs.CreateAsync(fx, tenant, "VIPs", """{"profile": {"field": "PROFILE_FIELD_TAGS", "op": "OPERATOR_EQUALS", "values": [{"stringValue": "vip"}]}}""");
        Assert.Equal((2, 1), (created.MemberCount, created.Version));
        Assert.NotNull(created.EvaluatedAt);
        var id = Guid.Parse(created.SegmentId);
        await EnteredAsync(id, p, q);

        created.Rule = Segs.Rule("""{"profile": {"field": "PROFILE_FIELD_TAGS", "op": "OPERATOR_NOT_EXISTS"}}""");
        var updated = await fx.Client.UpdateSegmentAsync(new UpdateSegmentRequest { Segment = created }, fx.As(tenant));
        Assert.Equal((1, 2), (updated.MemberCount, updated.Version));
        await EnteredAsync(id, r);
        await LeftAsync(id, p, q);

        updated.Name = "Untagged";
        var renamed = await fx.Client.UpdateSegmentAsync(new UpdateSegmentRequest { Segment = updated }, fx.As(tenant));
        Assert.Equal(("Untagged", 2), (renamed.Name, renamed.Version)); // the rule did not change

        var listed = await fx.Client.ListContactSegmentsAsync(new ListContactSegmentsRequest { ContactId = r.ToString() }, fx.As(tenant));
        var membership = Assert.Single(listed.Segments);
        Assert.Equal(("Untagged", "no tags"), (membership.Name, membership.Why));
        Assert.NotNull(membership.EnteredAt);
        Assert.Equal([r], await Segs.MembersAsync(fx, tenant, created.SegmentId));
    }

    [Fact]
    public async Task Should_keep_segments_that_read_segments_in_order_refuse_cycles_and_refuse_deleting_a_segment_in_use()
    {
        var tenant = SegmentationFixture.NewTenant();
        var now = fx.Clock.GetUtcNow();
        var vips = await Segs.CreateAsync(fx, tenant, "VIPs", """{"profile": {"field": "PROFILE_FIELD_TAGS", "op": "OPERATOR_EQUALS", "values": [{"stringValue": "vip"}]}}""");
        var koreanVips = await Segs.CreateAsync(fx, tenant, "Korean VIPs", $$$"""
            {"all": [{"segment": {"segmentId": "{{{vips.SegmentId}}}"}}, {"profile": {"field": "PROFILE_FIELD_LOCALE", "op": "OPERATOR_EQUALS", "values": [{"stringValue": "ko-KR"}]}}]}
            """);

        // A contact who is both: one refresh brings VIPs up to date first, then the segment that reads it.
        var c = Guid.NewGuid();
        await fx.PublishAsync(new ContactUpserted(tenant, c, "c", null, null, "ko-KR", null, ["vip"], "{}", false, now));
        await EnteredAsync(Guid.Parse(koreanVips.SegmentId), c);

        vips.Rule = Segs.Rule($$$"""{"segment": {"segmentId": "{{{koreanVips.SegmentId}}}"}}""");
        var cycle = await Segs.FailsWith(StatusCode.InvalidArgument,
            async () => await fx.Client.UpdateSegmentAsync(new UpdateSegmentRequest { Segment = vips }, fx.As(tenant)));
        Assert.Equal(["rule.segment.segment_id"], Segs.ViolatedFields(cycle));

        var inUse = await Segs.FailsWith(StatusCode.FailedPrecondition,
            async () => await fx.Client.DeleteSegmentAsync(new DeleteSegmentRequest { SegmentId = vips.SegmentId }, fx.As(tenant)));
        Assert.Contains("'Korean VIPs'", inUse!.Message);

        // Deleting publishes that everyone left.
        await fx.Client.DeleteSegmentAsync(new DeleteSegmentRequest { SegmentId = koreanVips.SegmentId }, fx.As(tenant));
        await LeftAsync(Guid.Parse(koreanVips.SegmentId), c);
        await fx.Client.DeleteSegmentAsync(new DeleteSegmentRequest { SegmentId = vips.SegmentId }, fx.As(tenant));
        await Segs.FailsWith(StatusCode.NotFound, async () => await fx.Client.GetSegmentAsync(new GetSegmentRequest { SegmentId = vips.SegmentId }, fx.As(tenant)));
    }

    [Fact]
    public async Task Should_re_evaluate_time_relative_segments_on_the_schedule_as_the_clock_moves()
    {
        var tenant = SegmentationFixture.NewTenant();
        var now = fx.Clock.GetUtcNow();
        var c = Guid.NewGuid();
        await fx.PublishAsync(new ContactUpserted(tenant, c, "c", null, null, null, null, [], "{}", false, now, CreatedAt: now.AddDays(-100)));
        await fx.PublishAsync(new TransactionsRecorded(tenant, [new RecordedOrder(c, "o-1", now.AddDays(-20), "KRW", 10m, "completed", [], [])]));
        await fx.WaitUntilAsync("SELECT count(*) FROM orders WHERE tenant_id = @tenant", new { tenant }, 1);
        await fx.WaitRefreshedAsync(tenant);
        var recent = await Segs.CreateAsync(fx, tenant, "Bought in the last 30 days", """{"purchases": {"measure": "PURCHASE_MEASURE_COUNT", "window": {"lastDays": 30}}}""");
        var lapsed = await Segs.CreateAsync(fx, tenant, "Did not buy in the last 30 days", """{"not": {"segment": {"segmentId": "SEGMENT"}}}""".Replace("SEGMENT", recent.SegmentId));
        Assert.Equal((1, 0), (recent.MemberCount, lapsed.MemberCount));

        await using var scheduled = await fx.StartHostAsync(new Dictionary<string, string?> { ["Segmentation:TimeRelativeInterval"] = "00:00:00.200" });
        try
        {
            fx.Clock.Advance(TimeSpan.FromDays(15));
            await LeftAsync(Guid.Parse(recent.SegmentId), c);
            await EnteredAsync(Guid.Parse(lapsed.SegmentId), c); // a segment reading a time-relative one moves with it
        }
        finally
        {
            fx.Clock.Set(DateTimeOffset.UtcNow);
        }
    }

    [Fact]
    public async Task Should_refuse_another_tenant_every_call_on_a_segment_and_its_contacts()
    {
        var (a, b) = (SegmentationFixture.NewTenant(), SegmentationFixture.NewTenant());
        var c = Guid.NewGuid();
        await fx.PublishAsync(new ContactUpserted(a, c, "c", null, null, null, null, ["vip"], "{}", false, fx.Clock.GetUtcNow()));
        await fx.WaitUntilAsync("SELECT count(*) FROM contacts WHERE tenant_id = @a", new { a }, 1);
        var segment = await Segs.CreateAsync(fx, a, "VIPs", """{"profile": {"field": "PROFILE_FIELD_TAGS", "op": "OPERATOR_EQUALS", "values": [{"stringValue": "vip"}]}}""");
        Assert.Equal(1, segment.MemberCount);

        var asB = fx.As(b);
        await Segs.FailsWith(StatusCode.NotFound, async () => await fx.Client.GetSegmentAsync(new GetSegmentRequest { SegmentId = segment.SegmentId }, asB));
        await Segs.FailsWith(StatusCode.NotFound, () => Segs.MembersAsync(fx, b, segment.SegmentId));
        await Segs.FailsWith(StatusCode.NotFound, async () => await fx.Client.PreviewSegmentAsync(
            new PreviewSegmentRequest { Rule = Segs.Rule($$$"""{"segment": {"segmentId": "{{{segment.SegmentId}}}"}}""") }, asB));
        await Segs.FailsWith(StatusCode.NotFound, async () => await fx.Client.UpdateSegmentAsync(new UpdateSegmentRequest { Segment = segment }, asB));
        await Segs.FailsWith(StatusCode.NotFound, async () => await fx.Client.DeleteSegmentAsync(new DeleteSegmentRequest { SegmentId = segment.SegmentId }, asB));
        await Segs.FailsWith(StatusCode.NotFound, async () => await fx.Client.ListContactSegmentsAsync(new ListContactSegmentsRequest { ContactId = c.ToString() }, asB));
        Assert.Empty((await fx.Client.ListSegmentsAsync(new ListSegmentsRequest(), asB)).Segments);
        Assert.Equal(0, (await fx.Client.PreviewSegmentAsync(new PreviewSegmentRequest { Rule = segment.Rule }, asB)).Count);

        // Scopes: reading is not writing.
        await Segs.FailsWith(StatusCode.PermissionDenied, async () => await fx.Client.CreateSegmentAsync(
            new CreateSegmentRequest { Segment = new Segment { Name = "x", Rule = segment.Rule } }, fx.As(a, Scope.SegmentsRead)));
        Assert.Equal(segment.SegmentId, (await fx.Client.GetSegmentAsync(new GetSegmentRequest { SegmentId = segment.SegmentId }, fx.As(a, Scope.SegmentsRead))).SegmentId);
    }

    [Fact]
    public async Task Should_list_segments_by_name_in_keyset_pages()
    {
        var tenant = SegmentationFixture.NewTenant();
        const string rule = """{"profile": {"field": "PROFILE_FIELD_TAGS", "op": "OPERATOR_EXISTS"}}""";
        foreach (var name in new[] { "charlie", "Alpha", "bravo" }) await Segs.CreateAsync(fx, tenant, name, rule);
        await Segs.FailsWith(StatusCode.AlreadyExists, () => Segs.CreateAsync(fx, tenant, "ALPHA", rule));

        var first = await fx.Client.ListSegmentsAsync(new ListSegmentsRequest { PageSize = 2 }, fx.As(tenant));
        Assert.Equal(["Alpha", "bravo"], first.Segments.Select(s => s.Name));
        var second = await fx.Client.ListSegmentsAsync(new ListSegmentsRequest { PageSize = 2, PageToken = first.NextPageToken }, fx.As(tenant));
        Assert.Equal(["charlie"], second.Segments.Select(s => s.Name));
        Assert.Equal("", second.NextPageToken);
    }

    /// <summary>
    /// The export holds one snapshot: members that leave or enter while it streams change nothing in it; a
    /// page token resumes after its contact in a new snapshot, which sees them.
    /// </summary>
    [Fact]
    public async Task Should_export_members_from_one_snapshot_in_pages_and_resume_from_a_page_token()
    {
        var tenant = SegmentationFixture.NewTenant();
        await fx.QueryScalarAsync<int>("""
            INSERT INTO contacts (tenant_id, contact_id, external_id, tags, created_at)
            SELECT @tenant, gen_random_uuid(), 'bulk-' || i, '{bulk}', now() FROM generate_series(1, 3000) i;
            SELECT 1;
            """, new { tenant });
        var segment = await Segs.CreateAsync(fx, tenant, "Bulk", """{"profile": {"field": "PROFILE_FIELD_TAGS", "op": "OPERATOR_EQUALS", "values": [{"stringValue": "bulk"}]}}""");
        Assert.Equal(3000, segment.MemberCount);
        var before = (await Segs.MembersAsync(fx, tenant, segment.SegmentId, pageSize: 700)).ToList();
        Assert.Equal(3000, before.Distinct().Count());
        Assert.Equal(before.OrderBy(g => g.ToString()), before); // contact-id order (uuid order is the text order)

        using var call = fx.Client.ExportSegmentMembers(new ExportSegmentMembersRequest { SegmentId = segment.SegmentId, PageSize = 1 }, fx.As(tenant));
        Assert.True(await call.ResponseStream.MoveNext());
        var head = call.ResponseStream.Current;
        Assert.Equal(3000, head.Total);
        Assert.NotNull(head.SnapshotAt);
        var streamed = head.Members.Select(m => Guid.Parse(m.ContactId)).ToList();

        // Meanwhile the last member leaves and a new one enters (after every other in contact-id order).
        var last = before[^1];
        var newcomer = Guid.Parse("ffffffff-ffff-ffff-ffff-ffffffffffff");
        await fx.QueryScalarAsync<int>("""
            DELETE FROM segment_members WHERE tenant_id = @tenant AND contact_id = @last;
            INSERT INTO contacts (tenant_id, contact_id, external_id, tags, created_at) VALUES (@tenant, @newcomer, 'late', '{bulk}', now());
            INSERT INTO segment_members (tenant_id, segment_id, contact_id, entered_at) VALUES (@tenant, @segment, @newcomer, now());
            SELECT 1;
            """, new { tenant, last, newcomer, segment = Guid.Parse(segment.SegmentId) });

        while (await call.ResponseStream.MoveNext()) streamed.AddRange(call.ResponseStream.Current.Members.Select(m => Guid.Parse(m.ContactId)));
        Assert.Equal(before, streamed);

        var resumed = await Segs.MembersAsync(fx, tenant, segment.SegmentId, pageSize: 1000, pageToken: head.NextPageToken);
        Assert.Equal(before.Skip(1).Where(g => g != last).Append(newcomer), resumed);
    }

    private Task EnteredAsync(Guid segment, params Guid[] contacts) => PublishedAsync(segment, contacts, e => e.Entered, "entered");

    private Task LeftAsync(Guid segment, params Guid[] contacts) => PublishedAsync(segment, contacts, e => e.Left, "left");

    /// <summary>Waits until SegmentMembershipChanged events of the segment have listed every one of the contacts.</summary>
    private async Task PublishedAsync(Guid segment, Guid[] contacts, Func<SegmentMembershipChanged, IReadOnlyList<Guid>> list, string what)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (!contacts.All(c => fx.Published.All<SegmentMembershipChanged>(e => e.SegmentId == segment && list(e).Contains(c)).Count > 0))
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"Not every contact was published as {what} segment {segment}");
            await Task.Delay(50);
        }
    }
}
