using Propeller.Application.EventStore;

namespace Propeller.Application.Aggregates;

/// <summary>
/// Loads an aggregate by folding its decider's Evolve over its stream. No snapshots: the latest state of a task is
/// Marten's inline TaskState document (ADR 0010), and this replay serves time travel and the few reads that fold.
/// </summary>
public sealed class AggregateLoader(IEventStore store)
{
    /// <summary>The latest state.</summary>
    public Task<LoadedAggregate<TState>> LoadAsync<TCommand, TEvent, TState>(Decider<TCommand, TEvent, TState> decider, string streamId, CancellationToken cancellationToken)
        where TEvent : class =>
        LoadAsync(decider, streamId, StreamReadOptions.All, cancellationToken);

    /// <summary>
    /// The state replayed to a version or a point in time (time travel).
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
        var stream = await store.ReadStreamAsync(streamId, options, cancellationToken);
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
