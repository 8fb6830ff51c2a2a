using Microsoft.Extensions.Logging;
using Propeller.Application.EventStore;
using Propeller.Application.Messaging;

namespace Propeller.Application.Aggregates;

/// <summary>
/// The one generic command path (STYLE.md DECIDERS): fold the stream, Decide, append with the expected version.
/// A lost race (<see cref="ConcurrencyException"/>) reloads and decides again, so concurrent commands on one aggregate
/// are serialised by retry and never lost.
/// </summary>
public sealed class CommandHandler(
    IEventStore store, AggregateLoader loader, ISnapshotStore snapshots, ILogger<CommandHandler> logger, StreamChanges? changes = null, AggregateCache? cache = null,
    ICommittedMessages? committed = null)
{
    /// <summary>States this handler appended, used instead of a load for the next command (checked by the append).</summary>
    public AggregateCache Cache { get; } = cache ?? new AggregateCache();

    /// <summary>Notified after every append this handler makes.</summary>
    public StreamChanges Changes { get; } = changes ?? new StreamChanges();

    /// <summary>
    /// How many times a command is decided again after losing a race before the conflict is surfaced: 12, as the
    /// Wolverine pipeline's conflict policy (ADR 0014); a loser reloads, so it loses at most once to each other writer.
    /// </summary>
    public int MaxAttempts { get; init; } = 12;

    public Task<CommandResult<TEvent, TState>> HandleAsync<TCommand, TEvent, TState>(
        Decider<TCommand, TEvent, TState> decider, string streamId, TCommand command, EventMetadata metadata, CancellationToken cancellationToken)
        where TEvent : class =>
        HandleAsync(decider, streamId, command, metadata, static (_, _) => [], cancellationToken);

    /// <summary>
    /// Handles the command and writes the messages <paramref name="outbox"/> derives from the new state and events in
    /// the same transaction as the events (sent after commit by the outbox relay; nothing is sent for a rejection or
    /// an idempotent repeat).
    /// </summary>
    public Task<CommandResult<TEvent, TState>> HandleAsync<TCommand, TEvent, TState>(
        Decider<TCommand, TEvent, TState> decider, string streamId, TCommand command, EventMetadata metadata,
        Func<TState, IReadOnlyList<TEvent>, IReadOnlyList<OutgoingMessage>> outbox, CancellationToken cancellationToken)
        where TEvent : class =>
        HandleCoreAsync(decider, streamId, command, metadata, outbox, null, null, cancellationToken);

    /// <summary>
    /// As above, and records <paramref name="received"/> (the message that carried the command) as handled in the
    /// same transaction as the events (the transactional inbox). Without events (a rejection, a no-op) nothing is
    /// recorded.
    /// </summary>
    public Task<CommandResult<TEvent, TState>> HandleAsync<TCommand, TEvent, TState>(
        Decider<TCommand, TEvent, TState> decider, string streamId, TCommand command, EventMetadata metadata, InboxReceipt received, CancellationToken cancellationToken)
        where TEvent : class =>
        HandleCoreAsync(decider, streamId, command, metadata, static (_, _) => [], null, received, cancellationToken);

    /// <summary>
    /// As above, and then <paramref name="followUp"/> may name a second command, decided on the state the first one
    /// produced; the events of both are appended together (one transaction). A follow-up that is rejected or changes
    /// nothing is dropped; the first command's outcome stands.
    /// </summary>
    public Task<CommandResult<TEvent, TState>> HandleAsync<TCommand, TEvent, TState>(
        Decider<TCommand, TEvent, TState> decider, string streamId, TCommand command, EventMetadata metadata,
        Func<TState, IReadOnlyList<TEvent>, IReadOnlyList<OutgoingMessage>> outbox, Func<TState, CancellationToken, ValueTask<TCommand?>>? followUp,
        CancellationToken cancellationToken)
        where TEvent : class =>
        HandleCoreAsync(decider, streamId, command, metadata, outbox, followUp, null, cancellationToken);

    private async Task<CommandResult<TEvent, TState>> HandleCoreAsync<TCommand, TEvent, TState>(
        Decider<TCommand, TEvent, TState> decider, string streamId, TCommand command, EventMetadata metadata,
        Func<TState, IReadOnlyList<TEvent>, IReadOnlyList<OutgoingMessage>> outbox, Func<TState, CancellationToken, ValueTask<TCommand?>>? followUp,
        InboxReceipt? received, CancellationToken cancellationToken)
        where TEvent : class
    {
        ArgumentNullException.ThrowIfNull(outbox);
        ArgumentNullException.ThrowIfNull(decider);
        var cached = true;
        for (var attempt = 1; ; attempt++)
        {
            LoadedAggregate<TState> loaded;
            var fromCache = false;
            if (cached && Cache.TryGet<TState>(streamId, out var hit))
            {
                loaded = hit;
                fromCache = true;
            }
            else
            {
                loaded = await loader.LoadAsync(decider, streamId, cancellationToken);
            }

            var decision = decider.Decide(command, loaded.State);
            if (decision.Rejection is not null || decision.Events.Count == 0)
            {
                if (fromCache)
                {
                    // A rejection or a no-op may come from a stale entry (another node moved the stream): decide again on a load.
                    Cache.Remove(streamId);
                    cached = false;
                    attempt--;
                    continue;
                }

                return new CommandResult<TEvent, TState>(loaded.State, loaded.Version, [], decision.Rejection);
            }

            var state = loaded.State;
            IReadOnlyList<TEvent> events = decision.Events;
            foreach (var @event in events)
            {
                state = decider.Evolve(state, @event);
            }

            if (followUp is not null && await followUp(state, cancellationToken) is { } next
                && decider.Decide(next, state) is { Rejection: null, Events.Count: > 0 } then)
            {
                events = [.. events, .. then.Events];
                foreach (var @event in then.Events)
                {
                    state = decider.Evolve(state, @event);
                }
            }

            try
            {
                var messages = outbox(state, events);
                var result = await store.AppendAsync(
                    streamId, decider.StreamType, ExpectedVersion.Exact(loaded.Version), [.. events], metadata, messages, received, cancellationToken);
                if (committed is not null && messages.Count > 0 && result.OutboxIds.Count == messages.Count)
                {
                    committed.Committed(result.OutboxIds, messages);
                }

                Cache.Set(streamId, state, result.NextVersion);
                Changes.Notify(streamId, result.NextVersion, state);
                await SaveSnapshotIfDueAsync(decider.Snapshots, streamId, result, state, cancellationToken);
                return new CommandResult<TEvent, TState>(state, result.NextVersion, events, null);
            }
            catch (ConcurrencyException) when (fromCache)
            {
                Cache.Remove(streamId);
                cached = false;
                attempt--;
            }
            catch (ConcurrencyException ex) when (attempt < MaxAttempts)
            {
                Cache.Remove(streamId);
                CommandLog.RetryingAfterConflict(logger, streamId, attempt, ex.Actual);
                await Task.Delay(TimeSpan.FromMilliseconds(Random.Shared.Next(1, 5 * attempt)), cancellationToken);
            }
            catch (StreamArchivedException)
            {
                Cache.Remove(streamId);
                throw;
            }
        }
    }

    private async Task SaveSnapshotIfDueAsync<TState>(SnapshotPolicy? policy, string streamId, AppendResult result, TState state, CancellationToken cancellationToken)
    {
        if (policy is null || policy.Every <= 0)
        {
            return;
        }

        // Due when the append crossed a multiple of Every, so multi-event appends do not step over it.
        if (result.NextVersion / policy.Every > result.PreviousVersion / policy.Every)
        {
            await snapshots.SaveAsync(streamId, policy.SnapshotType, result.NextVersion, state, cancellationToken);
        }
    }
}
