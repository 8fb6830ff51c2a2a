using JasperFx.Events;
using Marten.Events.Aggregation;
using Propeller.Domain.Tasks;

namespace Propeller.Application.Tasks;

/// <summary>
/// Marten builds <see cref="TaskState"/> with the task decider's own Evolve (the Domain stays free of Marten;
/// ARCHITECTURE.md §1). Registered inline: the state document is written in the append's transaction, so
/// FetchLatest / AggregateStream and the stored document always agree with the stream.
/// </summary>
public sealed class TaskStateProjection : SingleStreamProjection<TaskState, TaskId>
{
    public TaskStateProjection()
    {
        Name = "task_state";

        // Only task events: without the filter Marten loads a TaskState document for every stream in an append
        // (a proplet's too), one more query per session.
        IncludeType<TaskEvent>();
    }

    public override TaskState? Evolve(TaskState? snapshot, TaskId id, IEvent e)
    {
        ArgumentNullException.ThrowIfNull(e);
        return e.Data is TaskEvent taskEvent ? TaskDecider.Evolve(snapshot ?? TaskState.Initial, taskEvent) : snapshot;
    }
}
