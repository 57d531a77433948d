using System.IO.Hashing;
using System.Runtime.InteropServices;

namespace Crm.Contacts.Features.Imports;

/// <summary>
/// The order ids one import has written, as a scalable Bloom filter: it answers "certainly not" or
/// "maybe", and a "maybe" only costs the import a probe. Each slice is 1 MiB (2^23 bits, 5 probes)
/// and takes 700,000 ids at a false-positive rate under 0.5%; a new slice is added when one is
/// full, up to 16 (about 11 million orders). Past that the last slice fills up and answers "maybe"
/// more and more often: still correct, only slower. So an import holds about a byte per order, at
/// most 16 MiB, however large its file.
/// </summary>
public sealed class OrderIdFilter(int sliceBits = 1 << 23, int sliceCapacity = 700_000, int maxSlices = 16)
{
    private const int Probes = 5;
    private readonly List<ulong[]> _slices = [];
    private int _inLastSlice;

    public int Slices => _slices.Count;

    public void Add(string orderId)
    {
        if (_slices.Count == 0 || (_inLastSlice >= sliceCapacity && _slices.Count < maxSlices))
        {
            if (!int.IsPow2(sliceBits) || sliceBits < 64) throw new InvalidOperationException("A slice must be a power of two of at least 64 bits.");
            _slices.Add(new ulong[sliceBits / 64]);
            _inLastSlice = 0;
        }
        var slice = _slices[^1];
        var (h1, h2) = Hash(orderId);
        for (uint i = 0; i < Probes; i++)
        {
            var bit = (h1 + i * h2) & (uint)(sliceBits - 1);
            slice[bit >> 6] |= 1UL << (int)(bit & 63);
        }
        _inLastSlice++;
    }

    public bool MightContain(string orderId)
    {
        if (_slices.Count == 0) return false;
        var (h1, h2) = Hash(orderId);
        foreach (var slice in _slices)
        {
            var all = true;
            for (uint i = 0; i < Probes && all; i++)
            {
                var bit = (h1 + i * h2) & (uint)(sliceBits - 1);
                all = (slice[bit >> 6] & (1UL << (int)(bit & 63))) != 0;
            }
            if (all) return true;
        }
        return false;
    }

    /// <summary>Two 32-bit hashes from one 64-bit XXH3 (double hashing); the second is odd so the probes differ.</summary>
    private static (uint, uint) Hash(string value)
    {
        var h = XxHash3.HashToUInt64(MemoryMarshal.AsBytes(value.AsSpan()));
        return ((uint)h, (uint)(h >> 32) | 1);
    }
}
