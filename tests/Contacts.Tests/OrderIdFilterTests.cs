using Crm.Contacts.Features.Imports;

namespace Crm.Contacts.Tests;

public sealed class OrderIdFilterTests
{
    [Fact]
    public void Should_know_every_id_it_was_given_and_rarely_claim_others()
    {
        var filter = new OrderIdFilter();
        for (var i = 0; i < 700_000; i++) filter.Add($"INV-{i}");

        Assert.All(Enumerable.Range(0, 700_000).Where(i => i % 997 == 0), i => Assert.True(filter.MightContain($"INV-{i}")));
        var falsePositives = Enumerable.Range(0, 100_000).Count(i => filter.MightContain($"OTHER-{i}"));
        Assert.InRange(falsePositives, 0, 1_000); // under 1% (about 0.5% expected)
        Assert.Equal(1, filter.Slices);
    }

    [Fact]
    public void Should_add_slices_as_it_fills_and_stop_at_its_limit_without_forgetting()
    {
        var filter = new OrderIdFilter(sliceBits: 1 << 14, sliceCapacity: 1_000, maxSlices: 3);
        for (var i = 0; i < 2_500; i++) filter.Add(i.ToString(System.Globalization.CultureInfo.InvariantCulture));
        Assert.Equal(3, filter.Slices);

        // Past its last slice's capacity it keeps filling that slice: more "maybe", never a wrong "no".
        for (var i = 2_500; i < 10_000; i++) filter.Add(i.ToString(System.Globalization.CultureInfo.InvariantCulture));
        Assert.Equal(3, filter.Slices);
        Assert.All(Enumerable.Range(0, 10_000), i => Assert.True(filter.MightContain(i.ToString(System.Globalization.CultureInfo.InvariantCulture))));
    }

    [Fact]
    public void Should_claim_nothing_when_empty() => Assert.False(new OrderIdFilter().MightContain("INV-1"));
}
