namespace Crm.TestSupport;

/// <summary>A clock that runs in real time from a moment the test chooses (timers stay real).</summary>
public sealed class ShiftedClock : TimeProvider
{
    private TimeSpan _offset;

    public void Set(DateTimeOffset now) => _offset = now - DateTimeOffset.UtcNow;

    public void Advance(TimeSpan by) => _offset += by;

    public override DateTimeOffset GetUtcNow() => DateTimeOffset.UtcNow + _offset;
}
