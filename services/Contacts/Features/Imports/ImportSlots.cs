namespace Crm.Contacts.Features.Imports;

/// <summary>
/// How many imports a replica runs at once (<c>Imports:MaxConcurrent</c>, default 8); the others
/// wait for a slot before they start. A transaction import holds three pooled connections (its
/// progress row, its transaction, its resolver): unbounded, a burst of imports could take the
/// whole pool, each holding two connections and waiting for a third.
/// </summary>
public sealed class ImportSlots(IConfiguration configuration) : IDisposable
{
    private readonly SemaphoreSlim _slots = new(Math.Max(1, configuration.GetValue("Imports:MaxConcurrent", 8)));

    public async Task<IDisposable> TakeAsync(CancellationToken ct)
    {
        await _slots.WaitAsync(ct);
        return new Slot(_slots);
    }

    public void Dispose() => _slots.Dispose();

    private sealed class Slot(SemaphoreSlim slots) : IDisposable
    {
        private int _released;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _released, 1) == 0) slots.Release();
        }
    }
}
