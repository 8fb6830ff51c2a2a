namespace Propeller.Edge.Tasks;

/// <summary>
/// Values by task id, in the order they were last set: at most <paramref name="capacity"/> of them and
/// <paramref name="weightLimit"/> of their weight together (<paramref name="weigh"/>; the oldest go first), each
/// forgotten <paramref name="retention"/> after it was set. Setting and trimming take constant time. Not thread-safe:
/// its owner (<see cref="AttemptMemory"/>, <see cref="FinishedResults"/>) locks around it.
/// </summary>
internal sealed class RecentEntries<T>(TimeProvider time, int capacity, long weightLimit, TimeSpan retention, Func<string, T, long> weigh)
{
    private readonly Dictionary<string, LinkedListNode<Entry>> _byId = new(StringComparer.Ordinal);
    private readonly LinkedList<Entry> _oldestFirst = new();
    private long _weight;

    public int Count => _byId.Count;

    /// <summary>The value set for <paramref name="id"/>, unless it is forgotten or expired.</summary>
    public bool TryGet(string id, out T value)
    {
        if (_byId.TryGetValue(id, out var node) && time.GetElapsedTime(node.Value.At) < retention)
        {
            value = node.Value.Value;
            return true;
        }

        value = default!;
        return false;
    }

    /// <summary>Sets <paramref name="id"/>'s value (the newest now), then forgets what is expired or beyond the bounds.</summary>
    public void Set(string id, T value)
    {
        Remove(id);
        var now = time.GetTimestamp();
        var weight = weigh(id, value);
        _byId[id] = _oldestFirst.AddLast(new Entry(id, value, weight, now));
        _weight += weight;
        while (_oldestFirst.First is { } oldest
               && (_byId.Count > capacity || _weight > weightLimit || time.GetElapsedTime(oldest.Value.At, now) >= retention))
        {
            Remove(oldest.Value.Id);
        }
    }

    public void Remove(string id)
    {
        if (_byId.Remove(id, out var node))
        {
            _oldestFirst.Remove(node);
            _weight -= node.Value.Weight;
        }
    }

    private sealed record Entry(string Id, T Value, long Weight, long At);
}
