using Propeller.Application.Caching;

namespace Propeller.Application.Aggregates;

/// <summary>
/// The last state this node's Wolverine handlers committed per stream (set after the commit), so a read of it (GET
/// /tasks/{id} with long polling) skips the load. Safe with several nodes: an entry may be stale, and
/// commands never decide on it (they fetch the stream for writing with its expected version). A task that is not
/// active (pending, ended, deleted) is kept as its version alone (a null state); an active one in the task view's form,
/// a large module as its reference (ADR 0018). Bounded: past
/// <see cref="Capacity"/> entries it starts over.
/// </summary>
public sealed class AggregateCache
{
    private readonly VersionedCache<string, object?> _entries;

    public AggregateCache()
        : this(50_000)
    {
    }

    public AggregateCache(int capacity)
    {
        _entries = new VersionedCache<string, object?>(capacity, StringComparer.Ordinal);
    }

    public int Capacity => _entries.Capacity;

    public int Count => _entries.Count;

    public bool TryGet<TState>(string streamId, out LoadedAggregate<TState> loaded)
    {
        if (_entries.TryGet(streamId, out var value, out var version) && value is TState state)
        {
            loaded = new LoadedAggregate<TState>(state, version, false);
            return true;
        }

        loaded = null!;
        return false;
    }

    /// <summary>Never moves an entry backwards while it is held: a slower writer of an older version does not replace a
    /// newer one (after a start-over at <see cref="Capacity"/> it may: the entry was forgotten).</summary>
    public void Set<TState>(string streamId, TState state, long version) => _entries.Set(streamId, state, version);

    public void Remove(string streamId) => _entries.Remove(streamId);
}
