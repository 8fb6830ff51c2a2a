using Propeller.Domain.Tasks;

namespace Propeller.Application.Scheduling;

/// <summary>
/// Where a waiting task stands in the sweep's order (highest priority first, then least recently changed, then id):
/// the keyset a page of <see cref="IWaitingTaskQueries.ListWaitingAsync"/> continues after.
/// </summary>
public readonly record struct WaitingTaskKey(int Priority, DateTimeOffset? UpdatedAt, TaskId Id)
{
    /// <summary>The key of <paramref name="task"/> (a task without a spec sorts as one of default priority).</summary>
    public static WaitingTaskKey Of(TaskState task)
    {
        ArgumentNullException.ThrowIfNull(task);
        return new(task.Spec?.Priority ?? TaskSpec.DefaultPriority, task.UpdatedAt, task.Id);
    }

    /// <summary>The sweep's order in memory, as its query sorts (a missing change time first, as '-infinity').</summary>
    public static IComparer<WaitingTaskKey> SweepOrder { get; } = Comparer<WaitingTaskKey>.Create((x, y) =>
    {
        var byPriority = y.Priority.CompareTo(x.Priority);
        if (byPriority != 0)
        {
            return byPriority;
        }

        var byChange = (x.UpdatedAt ?? DateTimeOffset.MinValue).CompareTo(y.UpdatedAt ?? DateTimeOffset.MinValue);
        return byChange != 0 ? byChange : x.Id.Value.CompareTo(y.Id.Value);
    });
}
