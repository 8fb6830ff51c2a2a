namespace Propeller.Application.Changes;

/// <summary>
/// Committed changes of every stream, for live views (the manager's <c>/events</c> stream). The seam between the
/// readers and how the store tells of commits: today <see cref="Aggregates.StreamChanges"/> (this node's appends,
/// after they commit); a store with its own subscriptions can implement it instead.
/// </summary>
public interface IChangeFeed
{
    /// <summary>Starts a subscription: every change committed from now on is seen until it is disposed.</summary>
    ChangeSubscription Subscribe();
}
