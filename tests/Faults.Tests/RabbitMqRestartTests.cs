using System.Diagnostics;
using Crm.Faults.Tests.Infrastructure;
using Xunit.Abstractions;

namespace Crm.Faults.Tests;

/// <summary>
/// RabbitMQ goes away twice while 5,000 messages go out as DeliverMessage commands — once stopped cleanly,
/// once killed — on a node of the test's own. Publishers retry what the broker did not confirm, the broker
/// redelivers what Delivery did not acknowledge: every message reaches the provider exactly once.
/// </summary>
public sealed class RabbitMqRestartTests(ITestOutputHelper output)
{
    private const int Total = 5_000;

    [Fact]
    public Task Should_send_each_of_5000_messages_exactly_once_when_rabbitmq_stops_twice() =>
        Deadline.WithinAsync(TimeSpan.FromMinutes(5), async ct =>
        {
            await using var node = new PrivateRabbitMq();
            await node.StartAsync();
            await using var rig = await DeliveryRig.StartAsync(node.AmqpUri);
            var stopwatch = Stopwatch.StartNew();
            var tenant = await rig.NewWorkspaceAsync();
            var contacts = await rig.NewContactsAsync(tenant, 500, ct); // 10 each: under the transactional safety cap (20 an hour)
            var run = "rabbit";
            var publishing = Task.Run(async () =>
            {
                foreach (var command in DeliveryRig.Commands(tenant, contacts, Total, perCommand: 5, run)) await rig.PublishReliablyAsync(command, ct);
                output.WriteLine($"{stopwatch.Elapsed}: all commands published ({rig.PublishRetries} publishes retried)");
            }, ct);

            // Stopped cleanly a tenth of the way in; killed (SIGKILL of the Erlang VM) once Delivery has sent
            // another 500 after the restart.
            while (rig.ProviderCalls < Total / 10) await Task.Delay(5, ct);
            output.WriteLine($"{stopwatch.Elapsed}: stopping RabbitMQ at {rig.ProviderCalls} provider calls");
            await node.StopAsync();
            output.WriteLine($"{stopwatch.Elapsed}: stopped at {rig.ProviderCalls} provider calls");
            await Task.Delay(1_000, ct);
            await node.StartAsync();
            var back = rig.ProviderCalls;
            output.WriteLine($"{stopwatch.Elapsed}: RabbitMQ back at {back} provider calls");

            while (rig.ProviderCalls < Math.Min(back + 500, Total - 500)) await Task.Delay(5, ct);
            output.WriteLine($"{stopwatch.Elapsed}: killing RabbitMQ at {rig.ProviderCalls} provider calls");
            await node.KillAsync();
            await Task.Delay(1_000, ct);
            await node.StartAsync();
            output.WriteLine($"{stopwatch.Elapsed}: RabbitMQ back at {rig.ProviderCalls} provider calls");

            await publishing;
            await rig.WaitForEveryOutcomeAsync(tenant, Total, line => output.WriteLine($"{stopwatch.Elapsed}: {line}"), ct);
            var tally = await Tally.CountAsync(rig, tenant, run, Total);
            output.WriteLine($"{stopwatch.Elapsed}: {tally}");
            output.WriteLine($"{rig.Outcomes.Events} outcome events, {rig.Outcomes.RedeliveredEvents} of them delivered more than once");

            Assert.Equal(Total, tally.Messages);
            Assert.Equal(Total, tally.Sent);
            Assert.Equal(Total, tally.ProviderUnique);
            Assert.Equal(0, tally.ProviderDuplicates);
            Assert.Equal(0, tally.ProviderLost);
            Assert.Equal(0, tally.Unannounced);
            Assert.Equal(0, tally.AnnouncedOtherThanStored);
        });
}
