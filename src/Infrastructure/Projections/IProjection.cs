using Propeller.Application.EventStore;

namespace Propeller.Infrastructure.Projections;

/// <summary>
/// A read model built from events. <see cref="ApplyAsync"/> queues its writes on the context's batch; the caller runs
/// them in one round trip together with the events (inline) or the checkpoint (async), in one transaction.
/// </summary>
public interface IProjection
{
    /// <summary>Stable name; the checkpoint row's key.</summary>
    string Name { get; }

    /// <summary>The event aliases this projection reads; null for all.</summary>
    IReadOnlyCollection<string>? EventTypes { get; }

    /// <summary>Creates the projection's tables when missing (idempotent).</summary>
    Task EnsureSchemaAsync(ProjectionContext context, CancellationToken cancellationToken);

    /// <summary>
    /// Applies events. Inline, when <see cref="UsesGlobalPositions"/> is false, the events' positions are not known yet
    /// (<see cref="GlobalPosition.Start"/>): the writes go to the database in the same round trip as the append itself.
    /// </summary>
    Task ApplyAsync(ProjectionContext context, IReadOnlyList<StoredEvent> events, CancellationToken cancellationToken);

    /// <summary>Whether <see cref="ApplyAsync"/> reads the events' global positions (inline appends then take one round trip more).</summary>
    bool UsesGlobalPositions => true;

    /// <summary>Deletes everything the projection wrote, before a rebuild from zero.</summary>
    Task ResetAsync(ProjectionContext context, CancellationToken cancellationToken);
}
