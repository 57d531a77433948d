using Crm.Faults.Tests.Infrastructure;
using Crm.Fakes.Twilio;
using Crm.TestSupport;
using Xunit.Abstractions;

namespace Crm.Faults.Tests;

/// <summary>
/// The Delivery process SIGKILLed in the middle of sending, ten times in one run, and started again each
/// time: every message ends with exactly one outcome, and no message reaches the provider twice. A message
/// that was being sent when the process died is reported (failed, "unconfirmed: ...") and not sent again.
/// </summary>
public sealed class DeliveryKillTests(ITestOutputHelper output)
{
    private const int Total = 3_000;
    private const int Kills = 10;

    [Fact]
    public Task Should_give_every_message_one_outcome_and_never_call_the_provider_twice_when_killed_ten_times() =>
        Deadline.WithinAsync(TimeSpan.FromMinutes(5), async ct =>
        {
            var vhost = TestServers.UniqueName("faults-kill");
            var uri = await TestServers.CreateVirtualHostAsync(vhost);
            try
            {
                // Few messages at the provider at once, each answered after 20 ms: a run lasts long enough for ten
                // kills, and a kill often lands while a request is at the provider.
                await using var rig = await DeliveryRig.StartAsync(uri, new Dictionary<string, string?>
                {
                    ["Delivery:CommandConcurrency"] = "2",
                    ["Delivery:CommandsPerBatch"] = "4",
                    ["Delivery:Concurrency"] = "4",
                });
                rig.Twilio.Enqueue(TwilioBehavior.Delay(TimeSpan.FromMilliseconds(20)), FakeTwilioServer.Forever);
                var stopwatch = System.Diagnostics.Stopwatch.StartNew();
                var tenant = await rig.NewWorkspaceAsync();
                var contacts = await rig.NewContactsAsync(tenant, 300, ct);
                var run = "kill";
                foreach (var command in DeliveryRig.Commands(tenant, contacts, Total, perCommand: 5, run)) await rig.PublishReliablyAsync(command, ct);

                // Ten kills at random points of the run: each after the restarted process has made a random number of
                // provider calls (so it is always killed in the middle of sending), about a tenth of the run apart.
                var random = new Random();
                var span = Total * 0.9 / Kills;
                for (var kill = 0; kill < Kills; kill++)
                {
                    var point = rig.ProviderCalls + (int)(span * (0.3 + random.NextDouble() * 0.8));
                    while (rig.ProviderCalls < point) await Task.Delay(2, ct);
                    rig.Delivery.Kill();
                    var (killedAt, calls) = (stopwatch.Elapsed, rig.ProviderCalls);
                    var inFlight = await rig.CountAsync("SELECT count(*) FROM messages WHERE status = 'sending'");
                    await rig.StartDeliveryAsync();
                    output.WriteLine($"{killedAt}: killed at {calls} provider calls; {inFlight} messages were sending; ready again after {stopwatch.Elapsed - killedAt}");
                }

                output.WriteLine($"{stopwatch.Elapsed}: ten kills done; {await rig.StatusesAsync()}");
                await rig.WaitForEveryOutcomeAsync(tenant, Total, line => output.WriteLine($"{stopwatch.Elapsed}: {line}"), ct);
                output.WriteLine($"{stopwatch.Elapsed}: every message has its outcome");
                var tally = await Tally.CountAsync(rig, tenant, run, Total);
                output.WriteLine(tally.ToString());
                output.WriteLine($"{rig.Outcomes.Events} outcome events, {rig.Outcomes.RedeliveredEvents} of them delivered more than once");

                Assert.Equal(Total, tally.Messages);                 // one message per idempotency key
                Assert.Equal(0, tally.Unfinished);                    // each with an outcome
                Assert.Equal(0, tally.ProviderDuplicates);            // never sent twice
                Assert.Equal(0, tally.SentWithoutProviderCall);
                Assert.Equal(Total, tally.Sent + tally.Unconfirmed);  // the only failures: reported unconfirmed
                Assert.Equal(0, tally.Unannounced);                   // every outcome published...
                Assert.Equal(0, tally.AnnouncedOtherThanStored);      // ...as the one stored
                // Lost at the provider only where reported: an unconfirmed message that never got there.
                Assert.Equal(tally.Unconfirmed - tally.UnconfirmedThatReachedProvider, tally.ProviderLost);
            }
            finally
            {
                await TestServers.DeleteVirtualHostAsync(vhost);
            }
        });
}
