using JasperFx.Events;
using Marten;
using Propeller.Application.Aggregates;
using Propeller.Application.EventStore;
using Propeller.Application.Proplets;
using Propeller.Domain.Common;
using Propeller.Domain.Proplets;
using Propeller.Infrastructure.MartenStore;
using Propeller.Infrastructure.Wolverine;
using Wolverine;
using Wolverine.Marten;

namespace Propeller.Manager.Wolverine;

/// <summary>
/// A proplet command from the broker on its way through Wolverine (ADR 0014): discovery, Last Will, a heartbeat's
/// coming back online. <see cref="StreamId"/> is the proplet stream's Guid (a proplet id is free text; Marten keys
/// streams by Guid: <see cref="WolverineStreams.Key"/>), which the aggregate handler workflow reads.
/// </summary>
public sealed record RunPropletCommand(Guid StreamId, PropletCommand Command, EventMetadata Metadata)
{
    public static RunPropletCommand For(PropletCommand command, EventMetadata metadata)
    {
        ArgumentNullException.ThrowIfNull(command);
        return new(WolverineStreams.Key(PropletAggregate.StreamId(command.PropletId)), command, metadata);
    }
}

/// <summary>
/// The proplet commands as a Wolverine handler in the aggregate handler workflow: Wolverine fetches the proplet's
/// stream for writing (its inline <see cref="PropletDocument"/>, expected version), <see cref="PropletDecider"/> decides,
/// the events go on the stream and commit in Wolverine's transaction; a lost race is decided again (the conflict policy).
/// </summary>
public static class PropletCommandHandler
{
    /// <summary>
    /// Decides and appends; then, in the same transaction (ADR 0014, decision 13): a proplet discovered, back online or
    /// with new metadata starts its liveness timer and sends a sweep (waiting tasks may fit now); one that went offline
    /// has its running tasks re-dispatched. Without a broker (no scheduling) only the events.
    /// </summary>
    public static (CommandResult<PropletEvent, PropletState>, OutgoingMessages) Handle(
        RunPropletCommand message, [WriteAggregate(nameof(RunPropletCommand.StreamId), Required = false)] IEventStream<PropletDocument> stream, IDocumentSession session,
        CommandSessionServices services, WolverinePlacement placement)
    {
        ArgumentNullException.ThrowIfNull(message);
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(placement);
        var outgoing = new OutgoingMessages();
        if (message.Command is PropletCommand.RegisterProplet && stream.Aggregate is null && stream.CurrentVersion > 0)
        {
            // A proplet id that is a UUID names its stream directly (WolverineStreams.Key), and a task's stream has the
            // task's UUID: a stream with events but no proplet document is a task's (a deleted proplet keeps its
            // document). A proplet announcing a task's id must not write into that task's history.
            var refused = Rejection.Invalid($"proplet id {message.Command.PropletId.Value} is the id of a task's stream: refused (give the proplet another PROPLET_ENTITY_ID)");
            return (new CommandResult<PropletEvent, PropletState>(PropletState.Initial, stream.CurrentVersion ?? 0, [], refused), outgoing);
        }

        var before = stream.Aggregate?.State ?? PropletState.Initial;
        var decision = PropletDecider.Decide(message.Command, before);
        if (decision.Rejection is not null || decision.Events.Count == 0)
        {
            return (new CommandResult<PropletEvent, PropletState>(before, stream.CurrentVersion ?? 0, [], decision.Rejection), outgoing);
        }

        var state = decision.Events.Aggregate(before, PropletDecider.Evolve);
        stream.AppendMany(decision.Events);
        var version = (stream.StartingVersion ?? 0) + decision.Events.Count;
        services.Attach(session, message.Metadata).Committed(PropletAggregate.StreamId(message.Command.PropletId), state, version);
        if (placement.Scheduling is { } scheduling)
        {
            var propletId = message.Command.PropletId.Value;
            if (decision.Events.Any(e => e is PropletEvent.PropletWentOffline))
            {
                // Not at once: a result the proplet published before its will may be decided by another node of the share
                // group, which this node's order of the two cannot wait for (docs/operations.md).
                var redispatch = new RedispatchTasksOf(propletId, $"proplet {propletId} went offline", message.Metadata.Timestamp);
                var delay = scheduling.Planner.Options.OfflineRedispatchDelay;
                if (delay > TimeSpan.Zero)
                {
                    outgoing.Schedule(redispatch, message.Metadata.Timestamp + delay);
                }
                else
                {
                    outgoing.Add(redispatch);
                }
            }

            if (decision.Events.Any(e => e is PropletEvent.PropletDeleted))
            {
                // Deletion is refused while tasks run on the proplet, but a placement committing at the same moment is
                // not seen (the sweep catches what this misses: PropletFleet.GoneWithRunningTasks).
                outgoing.Add(new RedispatchTasksOf(propletId, $"proplet {propletId} was deleted", message.Metadata.Timestamp));
            }

            if (decision.Events.Any(e => e is PropletEvent.PropletRegistered or PropletEvent.PropletCameOnline))
            {
                scheduling.StartLiveness(session, outgoing, propletId, message.Metadata.Timestamp + scheduling.Planner.Options.LivenessWindow);
            }

            if (decision.Events.Any(e => e is PropletEvent.PropletRegistered or PropletEvent.PropletCameOnline or PropletEvent.PropletMetadataChanged))
            {
                outgoing.Add(new SweepWaitingTasks(null));
            }
        }

        return (new CommandResult<PropletEvent, PropletState>(state, version, decision.Events, null), outgoing);
    }
}
