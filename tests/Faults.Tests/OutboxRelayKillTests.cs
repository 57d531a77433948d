using System.Diagnostics;
using Crm.Faults.Tests.Infrastructure;
using Crm.TestSupport;
using Xunit.Abstractions;

namespace Crm.Faults.Tests;

/// <summary>
/// The outbox relay killed between commit and publish: Delivery commits every outcome with its event in the
/// outbox, and is SIGKILLed before it publishes any; restarted, it is killed again in the middle of
/// publishing them. After the last restart every event has been published — some twice (the bus is
/// at-least-once and consumers dedupe on the event id), none lost.
/// </summary>
public sealed class OutboxRelayKillTests(ITestOutputHelper output)
{
    private const int Total = 600;

    [Fact]
    public Task Should_publish_every_committed_event_after_the_relay_was_killed_before_and_while_publishing() =>
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

                // Every outcome committed with its event, none published: the moment between commit and publish.
                var events = await rig.CountAsync("SELECT count(*) FROM outbox_messages WHERE message_type LIKE 'Crm.Contracts.Delivery.Messages%'");
                Assert.True(events > 0);
                Assert.Equal(0, await rig.CountAsync("SELECT count(*) FROM outbox_messages WHERE published_at IS NOT NULL"));
                rig.Delivery.Kill();
                output.WriteLine($"{stopwatch.Elapsed}: killed with {events} outcome events committed and none published");

                // Restarted with its relay, and killed again once a quarter of the events have arrived, in the middle
                // of a batch (part of it received): some of the batch published, none of it marked published yet.
                const int batch = 50;
                var relay = new Dictionary<string, string?> { ["Outbox:RelayEnabled"] = "true", ["Outbox:BatchSize"] = $"{batch}" };
                await rig.LaunchDeliveryAsync(relay);
                while (rig.Outcomes.Events < events / 4 || rig.Outcomes.Events % batch is 0 or > batch * 3 / 4)
                {
                    if (rig.Delivery.HasExited) throw new InvalidOperationException($"Delivery exited:\n{rig.DeliveryLog}");
                    await Task.Delay(1, ct);
                }
                rig.Delivery.Kill();
                var stamped = await rig.CountAsync("SELECT count(*) FROM outbox_messages WHERE published_at IS NOT NULL");
                output.WriteLine($"{stopwatch.Elapsed}: killed again after the test received {rig.Outcomes.Events} events; {stamped} were marked published");
                Assert.True(stamped < events, "the second kill came after the relay had published everything");

                await rig.StartDeliveryAsync(relay);
                var stored = await rig.MessagesAsync(tenant);
                await rig.Outcomes.WaitForAsync(stored.Select(m => m.MessageId), ct);
                await rig.WaitUntilAsync("SELECT count(*) FROM outbox_messages WHERE published_at IS NOT NULL", null, events, ct);
                var tally = await Tally.CountAsync(rig, tenant, run, Total);
                output.WriteLine($"{stopwatch.Elapsed}: {tally}");
                output.WriteLine($"{rig.Outcomes.Events} distinct outcome events received, {rig.Outcomes.RedeliveredEvents} of them more than once");

                Assert.Equal(Total, tally.Sent);
                Assert.Equal(0, tally.Unannounced);                 // every event published after the restarts
                Assert.Equal(0, tally.AnnouncedOtherThanStored);
                Assert.Equal(events, rig.Outcomes.Events);           // each outbox row arrived (once or more)
                Assert.Equal(0, tally.ProviderDuplicates);
            }
            finally
            {
                await TestServers.DeleteVirtualHostAsync(vhost);
            }
        });
}
