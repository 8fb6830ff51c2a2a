using JasperFx.Events;
using Marten;
using Propeller.Application.Aggregates;
using Propeller.Application.EventStore;
using Propeller.Application.Proplets;
using Propeller.Domain.Proplets;
using Propeller.Infrastructure.MartenStore;
using Propeller.Infrastructure.Wolverine;
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
    public static CommandResult<PropletEvent, PropletState> Handle(
        RunPropletCommand message, [WriteAggregate(nameof(RunPropletCommand.StreamId), Required = false)] IEventStream<PropletDocument> stream, IDocumentSession session,
        CommandSessionServices services)
    {
        ArgumentNullException.ThrowIfNull(message);
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(services);
        var before = stream.Aggregate?.State ?? PropletState.Initial;
        var decision = PropletDecider.Decide(message.Command, before);
        if (decision.Rejection is not null || decision.Events.Count == 0)
        {
            return new CommandResult<PropletEvent, PropletState>(before, stream.CurrentVersion ?? 0, [], decision.Rejection);
        }

        var state = decision.Events.Aggregate(before, PropletDecider.Evolve);
        stream.AppendMany(decision.Events);
        var version = (stream.StartingVersion ?? 0) + decision.Events.Count;
        services.Attach(session, message.Metadata).Committed(PropletAggregate.StreamId(message.Command.PropletId), state, version);
        return new CommandResult<PropletEvent, PropletState>(state, version, decision.Events, null);
    }
}
