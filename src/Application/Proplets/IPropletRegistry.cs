using Propeller.Domain.Proplets;

namespace Propeller.Application.Proplets;

/// <summary>The proplet read model: queries, and heartbeats (folded into the view, never one event each).</summary>
public interface IPropletRegistry
{
    Task<PropletView?> GetAsync(PropletId id, CancellationToken cancellationToken);

    /// <summary>All proplets, ordered by name then id; liveness is judged by the caller with its clock and window.</summary>
    Task<IReadOnlyList<PropletView>> ListAsync(CancellationToken cancellationToken);

    /// <summary>As <see cref="ListAsync"/>, with the proplets that are not registered (deleted) yet have tasks running on
    /// them, read in the same round trip (<see cref="PropletFleet.GoneWithRunningTasks"/>).</summary>
    Task<PropletFleet> ListFleetAsync(CancellationToken cancellationToken);

    /// <summary>
    /// Records a heartbeat (keeps the last 10). Returns null when the proplet is unknown (the caller registers it),
    /// else whether it was marked offline (the caller marks it online again).
    /// </summary>
    Task<bool?> RecordHeartbeatAsync(PropletId id, DateTimeOffset at, CancellationToken cancellationToken);
}

/// <param name="Proplets">The registered proplets, as <see cref="IPropletRegistry.ListAsync"/> lists them.</param>
/// <param name="GoneWithRunningTasks">Proplets that are not registered (deleted) yet have tasks running on them: a task
/// placed on a proplet in the moment it was deleted (the deletion counted its running tasks before the placement
/// committed). Nothing watches such a proplet's liveness, so the scheduler's sweep re-dispatches those tasks.</param>
public sealed record PropletFleet(IReadOnlyList<PropletView> Proplets, IReadOnlyList<PropletId> GoneWithRunningTasks);
