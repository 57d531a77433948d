using System.Diagnostics;
using Crm.Faults.Tests.Infrastructure;
using Crm.TestSupport;
using Xunit.Abstractions;

namespace Crm.Faults.Tests;

/// <summary>
/// The outbox relay killed between commit and publish, at points the relay itself stops at (Outbox:PauseAt), so
/// every run kills it at the same moment: Delivery commits every outcome with its event in the outbox and
/// publishes none; restarted, it is killed holding its first batch claimed and unpublished (between commit and
/// publish), then killed again with that batch published and confirmed but not marked published. After the last
/// restart every event has arrived at the test's consumer: the events of the second kill's batch exactly twice
/// (at-least-once, consumers dedupe on the event id), every other event exactly once, none lost.
/// </summary>
public sealed class OutboxRelayKillTests(ITestOutputHelper output)
{
    private const int Total = 600;
    private const int Batch = 50;

    [Fact]
    public Task Should_publish_every_committed_event_once_after_the_relay_was_killed_between_commit_and_publish() =>
        Deadline.WithinAsync(TimeSpan.FromMinutes(3), async ct =>
        {
            var vhost = TestServers.UniqueName("faults-relay");
            var uri = await TestServers.CreateVirtualHostAsync(vhost);
            try
            {
                // One command per run of the pipeline, one message per command: an outcome event per message.
                await using var rig = await DeliveryRig.StartAsync(uri, new Dictionary<string, string?>
                {
                    ["Outbox:RelayEnabled"] = "false",
                    ["Delivery:CommandsPerBatch"] = "1",
                });
                var stopwatch = Stopwatch.StartNew();
                var tenant = await rig.NewWorkspaceAsync();
                var contacts = await rig.NewContactsAsync(tenant, 60, ct);
                var run = "relay";
                foreach (var command in DeliveryRig.Commands(tenant, contacts, Total, perCommand: 1, run)) await rig.PublishReliablyAsync(command, ct);
                await rig.WaitUntilAsync("SELECT count(*) FROM messages WHERE status IN ('sent', 'failed', 'suppressed')", null, Total, ct);
                var events = await rig.CountAsync("SELECT count(*) FROM outbox_messages WHERE message_type LIKE 'Crm.Contracts.Delivery.Messages%'");
                Assert.True(events > Batch);
                rig.Delivery.Kill();
                output.WriteLine($"{stopwatch.Elapsed}: {events} outcome events committed, the relay off");

                // Killed with its first batch claimed: read and locked, nothing of it published.
                var relay = new Dictionary<string, string?> { ["Outbox:RelayEnabled"] = "true", ["Outbox:BatchSize"] = $"{Batch}" };
                await rig.LaunchDeliveryAsync(new Dictionary<string, string?>(relay) { ["Outbox:PauseAt"] = "AfterClaim" });
                await rig.WaitForDeliveryLogAsync($"Outbox relay paused AfterClaim with {Batch} messages", ct);
                rig.Delivery.Kill();
                Assert.Equal(0, await rig.CountAsync("SELECT count(*) FROM outbox_messages WHERE published_at IS NOT NULL"));
                await rig.DrainOutcomesAsync(ct);
                Assert.Equal(0, rig.Outcomes.Events);
                output.WriteLine($"{stopwatch.Elapsed}: killed with a batch of {Batch} claimed and unpublished");

                // Killed with that batch published and confirmed by the broker, and not marked published.
                await rig.LaunchDeliveryAsync(new Dictionary<string, string?>(relay) { ["Outbox:PauseAt"] = "AfterPublish" });
                await rig.WaitForDeliveryLogAsync($"Outbox relay paused AfterPublish with {Batch} messages", ct);
                rig.Delivery.Kill();
                Assert.Equal(0, await rig.CountAsync("SELECT count(*) FROM outbox_messages WHERE published_at IS NOT NULL"));
                await rig.DrainOutcomesAsync(ct);
                var publishedBeforeKill = rig.Outcomes.Deliveries.Keys.ToHashSet();
                Assert.Equal(Batch, publishedBeforeKill.Count);
                output.WriteLine($"{stopwatch.Elapsed}: killed with a batch of {Batch} published and not marked");

                await rig.StartDeliveryAsync(relay);
                await rig.WaitUntilAsync("SELECT count(*) FROM outbox_messages WHERE published_at IS NOT NULL", null, events, ct);
                // Every row is marked published only once the broker confirmed it: all of them are queued ahead of this.
                await rig.DrainOutcomesAsync(ct);
                var tally = await Tally.CountAsync(rig, tenant, run, Total);
                var deliveries = rig.Outcomes.Deliveries;
                output.WriteLine($"{stopwatch.Elapsed}: {tally}");
                output.WriteLine($"{deliveries.Count} distinct outcome events received, {deliveries.Values.Count(n => n > 1)} of them more than once");

                Assert.Equal(Total, tally.Messages);                 // every message has its outcome (sent, or unconfirmed
                Assert.Equal(0, tally.Unfinished);                    // when the loaded box made the provider time out)
                Assert.Equal(0, tally.Unannounced);                 // every event published after the restarts
                Assert.Equal(0, tally.AnnouncedOtherThanStored);
                Assert.Equal(events, deliveries.Count);              // each outbox row arrived
                Assert.All(deliveries, d => Assert.Equal(publishedBeforeKill.Contains(d.Key) ? 2 : 1, d.Value));
                Assert.Equal(0, tally.ProviderDuplicates);
            }
            finally
            {
                await TestServers.DeleteVirtualHostAsync(vhost);
            }
        });
}
