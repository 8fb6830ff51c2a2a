namespace Propeller.Proxy.Tests;

/// <summary>A clock that moves only when told, or by <see cref="Step"/> at every reading (timers use real time).</summary>
internal sealed class SteppingClock : TimeProvider
{
    private readonly Lock _lock = new();
    private DateTimeOffset _now = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);

    /// <summary>How far every reading moves the clock after it is taken.</summary>
    public TimeSpan Step { get; set; }

    public override DateTimeOffset GetUtcNow()
    {
        lock (_lock)
        {
            var now = _now;
            _now += Step;
            return now;
        }
    }

    public void Advance(TimeSpan by)
    {
        lock (_lock)
        {
            _now += by;
        }
    }
}
