using Propeller.Application.Aggregates;
using Propeller.Application.EventStore;
using Propeller.Domain.Tasks;
using static Propeller.Domain.Tasks.TaskEvent;

namespace Propeller.Application.Tasks;

/// <summary>How the task aggregate is stored: its stream id, stream type, and stable event aliases.</summary>
public static class TaskAggregate
{
    public const string StreamType = "task";

    public static Decider<TaskCommand, TaskEvent, TaskState> Decider { get; } = new(
        StreamType,
        TaskDecider.Initial,
        TaskDecider.Decide,
        TaskDecider.Evolve);

    public static string StreamId(TaskId id) => $"task-{id}";

    /// <summary>Registers the task events under aliases that must never change once events are stored.</summary>
    public static EventTypeRegistry RegisterEvents(EventTypeRegistry registry)
    {
        ArgumentNullException.ThrowIfNull(registry);
        return registry
            .Register<TaskCreated>("task.created.v1")
            .Register<TaskUpdated>("task.updated.v1")
            .Register<TaskStartRequested>("task.start_requested.v1")
            .Register<TaskDispatchDeferred>("task.dispatch_deferred.v1")
            .Register<TaskDispatched>("task.dispatched.v1")
            .Register<TaskRedispatchRequested>("task.redispatch_requested.v1")
            .Register<TaskCompleted>("task.completed.v1")
            .Register<TaskFailed>("task.failed.v1")
            .Register<TaskStopped>("task.stopped.v1")
            .Register<TaskSkipped>("task.skipped.v1")
            .Register<TaskResultIgnored>("task.result_ignored.v1")
            .Register<TaskDeleted>("task.deleted.v1")
            .Register<TaskInvoked>("task.invoked.v1")
            .Register<TaskStartResent>("task.start_resent.v1")
            .Register<TaskServingEnded>("task.serving_ended.v1")
            .Register<TaskServingResumed>("task.serving_resumed.v1");
    }
}
