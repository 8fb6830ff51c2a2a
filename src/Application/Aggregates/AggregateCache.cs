using System.Collections.Concurrent;

namespace Propeller.Application.Aggregates;

/// <summary>
/// The last state this node appended per stream, so the next command on it skips the load. Safe with several nodes:
/// a command decided on a stale entry either fails its append (expected version) or is rejected/idempotent, and in
/// both cases <see cref="CommandHandler"/> drops the entry and decides again on a fresh load. Bounded: past
/// <see cref="Capacity"/> entries it starts over.
/// </summary>
public sealed class AggregateCache
{
    private readonly ConcurrentDictionary<string, Entry> _entries = new(StringComparer.Ordinal);

    public int Capacity { get; init; } = 50_000;

    public int Count => _entries.Count;

    public bool TryGet<TState>(string streamId, out LoadedAggregate<TState> loaded)
    {
        if (_entries.TryGetValue(streamId, out var entry) && entry.State is TState state)
        {
            loaded = new LoadedAggregate<TState>(state, entry.Version, false);
            return true;
        }

        loaded = null!;
        return false;
    }

    public void Set<TState>(string streamId, TState state, long version)
    {
        if (_entries.Count >= Capacity)
        {
            _entries.Clear();
        }

        // Never move an entry backwards: a slower writer of an older version must not replace a newer one.
        _entries.AddOrUpdate(
            streamId,
            static (_, arg) => arg,
            static (_, current, arg) => current.Version >= arg.Version ? current : arg,
            new Entry(state, version));
    }

    public void Remove(string streamId) => _entries.TryRemove(streamId, out _);

    private sealed record Entry(object? State, long Version);
}
