using Propeller.Application.EventStore;

namespace Propeller.Application.Aggregates;

/// <summary>Loads an aggregate by folding its decider's Evolve over its stream, from a snapshot when one is usable.</summary>
public sealed class AggregateLoader(IEventStore store, ISnapshotStore snapshots)
{
    /// <summary>The latest state (snapshot + tail when the decider has a snapshot policy).</summary>
    public Task<LoadedAggregate<TState>> LoadAsync<TCommand, TEvent, TState>(Decider<TCommand, TEvent, TState> decider, string streamId, CancellationToken cancellationToken)
        where TEvent : class =>
        LoadAsync(decider, streamId, StreamReadOptions.All, cancellationToken);

    /// <summary>
    /// The state replayed to a version or a point in time (time travel). Snapshots are used only for the latest state,
    /// since a snapshot may lie past the requested point.
    /// </summary>
    public async Task<LoadedAggregate<TState>> LoadAsync<TCommand, TEvent, TState>(
        Decider<TCommand, TEvent, TState> decider, string streamId, StreamReadOptions options, CancellationToken cancellationToken)
        where TEvent : class
    {
        ArgumentNullException.ThrowIfNull(decider);
        ArgumentNullException.ThrowIfNull(options);
        var state = decider.Initial;
        long version = 0;
        var latest = options.FromVersion <= 1 && options.ToVersion == long.MaxValue && options.Until is null;
        if (latest && decider.Snapshots is { } policy)
        {
            var snapshot = await snapshots.LoadAsync<TState>(streamId, policy.SnapshotType, cancellationToken);
            if (snapshot is not null)
            {
                state = snapshot.State;
                version = snapshot.Version;
            }
        }

        var stream = await store.ReadStreamAsync(streamId, options with { FromVersion = Math.Max(options.FromVersion, version + 1) }, cancellationToken);
        if (stream is null)
        {
            return new LoadedAggregate<TState>(decider.Initial, 0, false);
        }

        foreach (var stored in stream.Events)
        {
            state = decider.Evolve(state, (TEvent)stored.Data);
            version = stored.Version;
        }

        return new LoadedAggregate<TState>(state, latest ? stream.Version : version, stream.Archived);
    }
}
