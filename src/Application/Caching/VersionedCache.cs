using System.Collections.Concurrent;

namespace Propeller.Application.Caching;

/// <summary>
/// A concurrent map of the newest known version of something per key: an entry never moves backwards (a slower
/// writer of an older version does not replace a newer one) while it is held. Bounded: past <see cref="Capacity"/>
/// entries it starts over, and the versions go with the entries: an older version set after that takes its key, so a
/// reader must take an entry as possibly stale (AggregateCache's is: another node's commits make it so anyway). The
/// size is counted on the side, since <see cref="ConcurrentDictionary{TKey, TValue}.Count"/> takes every lock of the
/// map and cost more than the lookups on the hot path.
/// </summary>
/// <typeparam name="TKey">The key.</typeparam>
/// <typeparam name="TValue">The cached value.</typeparam>
public sealed class VersionedCache<TKey, TValue>
    where TKey : notnull
{
    private readonly ConcurrentDictionary<TKey, Entry> _entries;
    private int _count;

    public VersionedCache(int capacity, IEqualityComparer<TKey>? comparer = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        Capacity = capacity;
        _entries = new ConcurrentDictionary<TKey, Entry>(comparer);
    }

    public int Capacity { get; }

    /// <summary>About how many entries there are (exact when nothing is changing it).</summary>
    public int Count => Volatile.Read(ref _count);

    public bool TryGet(TKey key, out TValue value, out long version)
    {
        if (_entries.TryGetValue(key, out var entry))
        {
            value = entry.Value;
            version = entry.Version;
            return true;
        }

        value = default!;
        version = 0;
        return false;
    }

    /// <summary>Stores <paramref name="value"/> at <paramref name="version"/> unless a newer version is there.</summary>
    public void Set(TKey key, TValue value, long version)
    {
        if (Volatile.Read(ref _count) >= Capacity)
        {
            Clear();
        }

        var entry = new Entry(value, version);
        while (true)
        {
            if (_entries.TryGetValue(key, out var current))
            {
                if (current.Version > version || _entries.TryUpdate(key, entry, current))
                {
                    return;
                }
            }
            else if (_entries.TryAdd(key, entry))
            {
                Interlocked.Increment(ref _count);
                return;
            }
        }
    }

    public void Remove(TKey key)
    {
        if (_entries.TryRemove(key, out _))
        {
            Interlocked.Decrement(ref _count);
        }
    }

    public void Clear()
    {
        _entries.Clear();
        Volatile.Write(ref _count, 0);
    }

    private sealed record Entry(TValue Value, long Version);
}
