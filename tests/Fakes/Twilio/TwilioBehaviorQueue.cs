namespace Crm.Fakes.Twilio;

/// <summary>
/// Programmed behaviours, first-in first-out, per recipient ('To') and global. A request takes from its
/// recipient's queue first, then from the global one; an entry programmed for N times serves N requests.
/// </summary>
internal sealed class TwilioBehaviorQueue
{
    private readonly Lock _gate = new();
    private readonly List<Entry> _global = [];
    private readonly Dictionary<string, List<Entry>> _byRecipient = new(StringComparer.Ordinal);

    public void Enqueue(TwilioBehavior behavior, int times, string? to)
    {
        ArgumentNullException.ThrowIfNull(behavior);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(times);
        lock (_gate)
        {
            var queue = to is null ? _global : GetOrAdd(to);
            queue.Add(new Entry(behavior, times));
        }
    }

    public TwilioBehavior? Take(string? to)
    {
        lock (_gate)
        {
            if (to is not null && _byRecipient.TryGetValue(to, out var mine) && TakeFrom(mine) is { } own)
            {
                return own;
            }
            return TakeFrom(_global);
        }
    }

    public void Clear()
    {
        lock (_gate)
        {
            _global.Clear();
            _byRecipient.Clear();
        }
    }

    private static TwilioBehavior? TakeFrom(List<Entry> queue)
    {
        if (queue.Count == 0)
        {
            return null;
        }
        var head = queue[0];
        if (head.Remaining != int.MaxValue && --head.Remaining == 0)
        {
            queue.RemoveAt(0);
        }
        return head.Behavior;
    }

    private List<Entry> GetOrAdd(string to)
    {
        if (!_byRecipient.TryGetValue(to, out var queue))
        {
            queue = [];
            _byRecipient[to] = queue;
        }
        return queue;
    }

    private sealed class Entry(TwilioBehavior behavior, int remaining)
    {
        public TwilioBehavior Behavior { get; } = behavior;
        public int Remaining { get; set; } = remaining;  // int.MaxValue: forever
    }
}
