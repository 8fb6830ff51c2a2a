using JasperFx.Events;
using Marten.Events.Aggregation;
using Propeller.Domain.Proplets;

namespace Propeller.Infrastructure.MartenStore;

/// <summary>
/// The proplet view on Marten (ADR 0010 step 2): the proplet's <see cref="PropletState"/> as its decider folds it,
/// under the Guid identity Marten keys its streams by (a <see cref="PropletId"/> is free text, so the state cannot be
/// the document itself). Liveness and the held-task report are not here: this document is written whole by the inline
/// projection from what it loaded, which put older values back over ones patched meanwhile (<see cref="PropletLiveness"/>).
/// </summary>
public sealed record PropletDocument
{
    /// <summary>The stream's Guid (<see cref="MartenStreamIds.ToGuid"/> of "proplet-{id}").</summary>
    public Guid Id { get; set; }

    public PropletState State { get; init; } = PropletState.Initial;
}

/// <summary>
/// Builds <see cref="PropletDocument"/> inline with the proplet decider's Evolve (the Domain stays free of Marten). A
/// registration starts liveness afresh (<see cref="PropletLiveness"/> keys its rows by the registration). A deleted
/// proplet keeps its document with the deleted state (Marten 9 stored the state of an Evolve that returned null here; the registry skips deleted ones).
/// </summary>
public sealed class PropletDocumentProjection : SingleStreamProjection<PropletDocument, Guid>
{
    public const string ProjectionName = "proplet_view";

    public PropletDocumentProjection()
    {
        Name = ProjectionName;

        // Only proplet events: without the filter Marten loads a proplet document for every task append too.
        IncludeType<PropletEvent>();
    }

    public override PropletDocument? Evolve(PropletDocument? snapshot, Guid id, IEvent e)
    {
        ArgumentNullException.ThrowIfNull(e);
        if (e.Data is not PropletEvent propletEvent)
        {
            return snapshot;
        }

        var state = PropletDecider.Evolve(snapshot?.State ?? PropletState.Initial, propletEvent);
        return snapshot is null || propletEvent is PropletEvent.PropletRegistered
            ? new PropletDocument { Id = id, State = state }
            : snapshot with { State = state };
    }
}
