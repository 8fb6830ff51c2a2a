using Propeller.Application.Aggregates;
using Propeller.Application.EventStore;

namespace Propeller.Infrastructure.Tests.Support;

/// <summary>
/// The event store port's tests drive it the way a command does (the manager's own commands are Wolverine handlers,
/// ADR 0014): load the stream, decide, append at the loaded version, and on a lost race load and decide again.
/// </summary>
internal sealed class StreamCommands(IEventStore store, AggregateLoader loader)
{
    public async Task<CommandResult<TEvent, TState>> HandleAsync<TCommand, TEvent, TState>(
        Decider<TCommand, TEvent, TState> decider, string streamId, TCommand command, EventMetadata metadata, CancellationToken cancellationToken)
        where TEvent : class
    {
        for (var attempt = 1; ; attempt++)
        {
            var loaded = await loader.LoadAsync(decider, streamId, cancellationToken);
            var decision = decider.Decide(command, loaded.State);
            if (decision.Rejection is not null || decision.Events.Count == 0)
            {
                return new CommandResult<TEvent, TState>(loaded.State, loaded.Version, [], decision.Rejection);
            }

            var state = decision.Events.Aggregate(loaded.State, decider.Evolve);
            try
            {
                var result = await store.AppendAsync(streamId, decider.StreamType, ExpectedVersion.Exact(loaded.Version), [.. decision.Events], metadata, cancellationToken);
                return new CommandResult<TEvent, TState>(state, result.NextVersion, decision.Events, null);
            }
            catch (ConcurrencyException) when (attempt < 20)
            {
                await Task.Delay(Random.Shared.Next(1, 5 * attempt), cancellationToken);
            }
        }
    }
}
