using JasperFx.Events;
using Marten.Events.Aggregation;
using Propeller.Domain.Tasks;

namespace Propeller.Application.Tasks;

/// <summary>
/// Marten builds <see cref="TaskState"/> with the task decider's own Evolve (the Domain stays free of Marten;
/// ARCHITECTURE.md §1). Registered inline: the state document is written in the append's transaction, so
/// FetchLatest / AggregateStream and the stored document always agree with the stream. A module larger than
/// <see cref="ModuleReference.InlineLimit"/> is held by its <see cref="TaskModule"/> document, the view holds its
/// reference (ADR 0018).
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
        if (e.Data is not TaskEvent taskEvent)
        {
            return snapshot;
        }

        var state = TaskDecider.Evolve(snapshot ?? TaskState.Initial, taskEvent);
        // A large module stays out of the view (its TaskModule document holds it): only where an event sets it, so a
        // view written before this rule keeps its module until then (ADR 0018).
        return taskEvent is TaskEvent.TaskCreated or TaskEvent.TaskUpdated ? ModuleReference.Referenced(state) : state;
    }
}
