using Propeller.Domain.Tasks;

namespace Propeller.Application.Tasks;

/// <summary>Reads of the task read model (the task_view projection, written in the append transaction).</summary>
public interface ITaskQueries
{
    Task<TaskState?> GetAsync(TaskId id, CancellationToken cancellationToken);

    /// <summary>
    /// The task's view when it is at exactly <paramref name="version"/> of its stream, deleted or not (null otherwise):
    /// the state replayed to the stream's current version without folding it (a recurring task's stream grows with
    /// every run).
    /// </summary>
    Task<TaskState?> GetAtVersionAsync(TaskId id, long version, CancellationToken cancellationToken);

    /// <summary>
    /// A page of the tasks that <paramref name="filter"/> lets through, oldest first (newest first when it says so).
    /// </summary>
    Task<TaskList> ListAsync(long offset, int limit, TaskListFilter filter, CancellationToken cancellationToken);

    /// <summary>The tasks whose run goes on on <paramref name="propletId"/> (TaskState.RunGoesOn): running, or completed and serving.</summary>
    Task<IReadOnlyList<TaskState>> ListRunsOnAsync(string propletId, CancellationToken cancellationToken);
}
