using Propeller.Domain.Common;

namespace Propeller.Domain.Tasks;

/// <summary>Everything that can happen to a task. Stored under the aliases in TaskEventTypes (Application).</summary>
public abstract record TaskEvent
{
    private TaskEvent()
    {
    }

    public abstract TaskId TaskId { get; init; }

    public sealed record TaskCreated(TaskId TaskId, TaskSpec Spec, DateTimeOffset CreatedAt) : TaskEvent;

    public sealed record TaskUpdated(TaskId TaskId, TaskSpec Spec, DateTimeOffset UpdatedAt) : TaskEvent;

    /// <summary>A start was asked for; <paramref name="Attempt"/> counts runs, from 1.</summary>
    public sealed record TaskStartRequested(TaskId TaskId, int Attempt, DateTimeOffset RequestedAt, string? RequestedBy = null) : TaskEvent;

    /// <summary>The scheduler could not place the task yet; it waits for a proplet and says why (recorded when the reason changes).</summary>
    public sealed record TaskDispatchDeferred(TaskId TaskId, int Attempt, string Reason, DateTimeOffset DeferredAt) : TaskEvent;

    public sealed record TaskDispatched(TaskId TaskId, int Attempt, string PropletId, DateTimeOffset DispatchedAt, EquatableMap? ExtraEnv = null) : TaskEvent;

    /// <summary>
    /// The proplet running the task went away; the task waits for another one (<paramref name="Redispatches"/> so far,
    /// of which <paramref name="Counted"/> count toward the limit: null when all do; fewer when the run lost had gone on
    /// long enough to forget those before, TaskCommand.RedispatchTask.ResetAfter).
    /// </summary>
    public sealed record TaskRedispatchRequested(TaskId TaskId, int Attempt, string FromPropletId, string Reason, int Redispatches, DateTimeOffset RequestedAt, int? Counted = null) : TaskEvent;

    /// <summary>
    /// The start of <paramref name="Attempt"/> went to <paramref name="PropletId"/> again: the proplet reported the tasks
    /// it holds without this one (a start the broker dropped). Counted in the state (TaskState.StartResends); the
    /// proplet runs it once.
    /// </summary>
    public sealed record TaskStartResent(TaskId TaskId, int Attempt, string PropletId, string Reason, DateTimeOffset ResentAt) : TaskEvent;

    /// <summary>
    /// The current attempt's result. <paramref name="StillRunning"/> true: the run goes on on its proplet after this
    /// result, until a stop (a daemon, whose empty result the proplet sends once it started, or a served HTTP proxy,
    /// "started at port N"); null otherwise (absent from the events before it was recorded).
    /// </summary>
    public sealed record TaskCompleted(TaskId TaskId, int Attempt, string? Results, DateTimeOffset CompletedAt, bool? StillRunning = null) : TaskEvent;

    /// <summary>
    /// The run a completed result left going (a daemon, a served HTTP proxy: TaskState.IsServing) ended on its proplet on
    /// its own, without an error: <paramref name="Results"/> is what it produced. The task stays Completed, no longer
    /// serving. (Ended with an error, it fails: TaskFailed.)
    /// </summary>
    public sealed record TaskServingEnded(TaskId TaskId, int Attempt, string? Results, DateTimeOffset EndedAt) : TaskEvent;

    /// <summary>
    /// A serving task's proplet, sent its start again (TaskStartResent: it restarted and lost the run), started the run
    /// anew: its "started" result came back. The sends so far are forgiven (TaskState.StartResends back to 0), so a
    /// daemon whose proplet restarts now and then is not re-dispatched as if that proplet never took its start.
    /// </summary>
    public sealed record TaskServingResumed(TaskId TaskId, int Attempt, string PropletId, DateTimeOffset ResumedAt) : TaskEvent;

    public sealed record TaskFailed(TaskId TaskId, int Attempt, string Error, DateTimeOffset FailedAt) : TaskEvent;

    public sealed record TaskStopped(TaskId TaskId, int Attempt, string Reason, DateTimeOffset StoppedAt) : TaskEvent;

    public sealed record TaskSkipped(TaskId TaskId, string Reason, DateTimeOffset SkippedAt) : TaskEvent;

    /// <summary>A result that arrived for a task that was not running (duplicate or late): kept for audit, not applied.</summary>
    public sealed record TaskResultIgnored(TaskId TaskId, int Attempt, string Reason, DateTimeOffset ReceivedAt) : TaskEvent;

    public sealed record TaskDeleted(TaskId TaskId, DateTimeOffset DeletedAt) : TaskEvent;

    /// <summary>
    /// A latent task was invoked (spec propeller-manager.md §2.8) on <paramref name="PropletId"/>: its results, or the
    /// error (a proplet's, or the wait that timed out). The original kept invocations only in memory.
    /// </summary>
    public sealed record TaskInvoked(TaskId TaskId, string InvocationId, string? PropletId, string? Results, string? Error, DateTimeOffset InvokedAt) : TaskEvent;
}
