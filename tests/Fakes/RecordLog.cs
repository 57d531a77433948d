namespace Crm.Fakes;

/// <summary>
/// Append-only, thread-safe list of what a fake received, with "wait until N items arrived" so tests
/// do not poll or sleep. Snapshots are copies: callers can enumerate them while traffic continues.
/// </summary>
internal sealed class RecordLog<T>
{
    private readonly Lock _gate = new();
    private readonly List<T> _items = [];
    private readonly List<(int Count, TaskCompletionSource<IReadOnlyList<T>> Signal)> _waiters = [];

    public int Count
    {
        get
        {
            lock (_gate)
            {
                return _items.Count;
            }
        }
    }

    public void Add(T item)
    {
        List<TaskCompletionSource<IReadOnlyList<T>>> ready = [];
        IReadOnlyList<T> snapshot = [];
        lock (_gate)
        {
            _items.Add(item);
            for (var i = _waiters.Count - 1; i >= 0; i--)
            {
                if (_items.Count >= _waiters[i].Count)
                {
                    ready.Add(_waiters[i].Signal);
                    _waiters.RemoveAt(i);
                }
            }
            // Copied only for waiters: recording N items stays O(N) when nobody waits.
            if (ready.Count > 0) snapshot = _items.ToArray();
        }
        // Completed outside the lock; RunContinuationsAsynchronously keeps waiters off this thread.
        foreach (var signal in ready)
        {
            signal.TrySetResult(snapshot);
        }
    }

    public IReadOnlyList<T> Snapshot()
    {
        lock (_gate)
        {
            return _items.ToArray();
        }
    }

    public void Clear()
    {
        lock (_gate)
        {
            _items.Clear();
        }
    }

    /// <summary>Completes with a snapshot once at least <paramref name="count"/> items were recorded.</summary>
    /// <exception cref="TimeoutException">With what did arrive, to make a failing test readable.</exception>
    public async Task<IReadOnlyList<T>> WaitForCountAsync(
        int count, TimeSpan timeout, Func<IReadOnlyList<T>, string> describe, CancellationToken cancellationToken)
    {
        TaskCompletionSource<IReadOnlyList<T>> signal;
        lock (_gate)
        {
            if (_items.Count >= count)
            {
                return _items.ToArray();
            }
            signal = new TaskCompletionSource<IReadOnlyList<T>>(TaskCreationOptions.RunContinuationsAsynchronously);
            _waiters.Add((count, signal));
        }

        try
        {
            return await signal.Task.WaitAsync(timeout, cancellationToken).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            lock (_gate)
            {
                _waiters.RemoveAll(w => w.Signal == signal);
            }
            var got = Snapshot();
            throw new TimeoutException(
                $"Expected at least {count} within {timeout.TotalMilliseconds:0} ms but got {got.Count}: {describe(got)}");
        }
    }
}
