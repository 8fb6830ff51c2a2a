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
}
