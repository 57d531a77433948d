using Crm.Contacts.Features.Imports;
using Microsoft.Extensions.Configuration;

namespace Crm.Contacts.Tests;

public sealed class ImportSlotsTests
{
    [Fact]
    public async Task Should_start_an_import_over_the_limit_only_when_one_finishes()
    {
        using var slots = new ImportSlots(new ConfigurationBuilder()
            .AddInMemoryCollection(new Dictionary<string, string?> { ["Imports:MaxConcurrent"] = "2" }).Build());
        var first = await slots.TakeAsync(CancellationToken.None);
        using var second = await slots.TakeAsync(CancellationToken.None);

        var third = slots.TakeAsync(CancellationToken.None);
        await Task.Delay(100);
        Assert.False(third.IsCompleted);

        first.Dispose();
        first.Dispose(); // a slot is given back once
        (await third.WaitAsync(TimeSpan.FromSeconds(5))).Dispose();
        using var fourth = await slots.TakeAsync(CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(5));

        // Two held (second, fourth): the double Dispose above did not free a third slot.
        using var soon = new CancellationTokenSource(TimeSpan.FromMilliseconds(50));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => slots.TakeAsync(soon.Token));
    }
}
