using JasperFx.Events;
using Marten.Events.Aggregation;
using Propeller.Domain.Proplets;

namespace Propeller.Infrastructure.MartenStore;

/// <summary>
/// The proplet view on Marten (ADR 0010 step 2): the proplet's <see cref="PropletState"/> as its decider folds it,
/// under the Guid identity Marten keys its streams by (a <see cref="PropletId"/> is free text, so the state cannot be
/// the document itself), plus liveness, which heartbeats patch in place without an event each.
/// </summary>
public sealed record PropletDocument
{
    /// <summary>The stream's Guid (<see cref="MartenStreamIds.ToGuid"/> of "proplet-{id}").</summary>
    public Guid Id { get; set; }

    public PropletState State { get; init; } = PropletState.Initial;

    /// <summary>The newest heartbeat; null until the first one after (re-)registration.</summary>
    public DateTimeOffset? LastAliveAt { get; init; }

    /// <summary>The last <see cref="MartenPropletRegistry.AliveHistoryLength"/> heartbeats, oldest first.</summary>
    public IReadOnlyList<DateTimeOffset> AliveHistory { get; init; } = [];

    /// <summary>When the proplet last reported the tasks it holds (our proplet's discovery), patched by the report's
    /// reconciliation; null for a proplet that never did (the original).</summary>
    public DateTimeOffset? HeldReportedAt { get; init; }
}

/// <summary>
/// Builds <see cref="PropletDocument"/> inline with the proplet decider's Evolve (the Domain stays free of Marten). A
/// registration starts liveness afresh (as the proplet_view row did). A deleted proplet keeps its document with the
/// deleted state (Marten 9 stored the state of an Evolve that returned null here; the registry skips deleted ones).
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
