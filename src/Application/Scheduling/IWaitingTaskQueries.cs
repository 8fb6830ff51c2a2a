namespace Propeller.Application.Scheduling;

/// <summary>The tasks waiting for a proplet (Scheduled), read page by page by the sweep so that each round sees them all.</summary>
public interface IWaitingTaskQueries
{
    /// <summary>
    /// The keys of at most <paramref name="limit"/> waiting tasks in the sweep's order (<see cref="WaitingTaskKey"/>),
    /// starting after <paramref name="after"/> (from the first when null): a keyset page, so a task whose deferral
    /// changed nothing is not read again in the same round and the ones behind it are reached. Keys, not documents:
    /// placing fetches the tasks for writing anyway, and a task's document holds its module.
    /// </summary>
    Task<IReadOnlyList<WaitingTaskKey>> ListWaitingAsync(WaitingTaskKey? after, int limit, CancellationToken cancellationToken);
}
