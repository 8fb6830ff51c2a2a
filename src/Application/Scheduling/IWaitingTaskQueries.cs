using Propeller.Domain.Tasks;

namespace Propeller.Application.Scheduling;

/// <summary>The tasks waiting for a proplet (Scheduled), read page by page by the sweep so that each round sees them all.</summary>
public interface IWaitingTaskQueries
{
    /// <summary>
    /// At most <paramref name="limit"/> waiting tasks in the sweep's order (<see cref="WaitingTaskKey"/>), starting
    /// after <paramref name="after"/> (from the first when null): a keyset page, so a task whose deferral changed
    /// nothing is not read again in the same round and the ones behind it are reached.
    /// </summary>
    Task<IReadOnlyList<TaskState>> ListWaitingAsync(WaitingTaskKey? after, int limit, CancellationToken cancellationToken);
}
