using System.Diagnostics.Metrics;

namespace Propeller.Manager.Events;

/// <summary>
/// The /events streams this node serves, at most <see cref="Max"/> at once (MANAGER_EVENTS_MAX_STREAMS): each holds a
/// subscription that may buffer up to its byte budget for a reader that stopped reading, so without a bound a client
/// opening streams without end took the node's memory. Their number is in /metrics (<c>manager_event_streams</c>).
/// </summary>
internal sealed class EventReaders(int max)
{
    private static readonly UpDownCounter<int> Streams = ManagerMeter.Meter.CreateUpDownCounter<int>(
        "manager_event_streams", "{stream}", "/events streams open on this node");

    private int _open;

    /// <summary>The most streams served at once.</summary>
    public int Max => max;

    /// <summary>The streams open now.</summary>
    public int Open => Volatile.Read(ref _open);

    /// <summary>A place for one more stream, given back when disposed (once); null when <see cref="Max"/> are open.</summary>
    public IDisposable? TryEnter()
    {
        if (Interlocked.Increment(ref _open) > max)
        {
            Interlocked.Decrement(ref _open);
            return null;
        }

        Streams.Add(1);
        return new Place(this);
    }

    private sealed class Place(EventReaders owner) : IDisposable
    {
        private int _left;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _left, 1) == 0)
            {
                Interlocked.Decrement(ref owner._open);
                Streams.Add(-1);
            }
        }
    }
}
