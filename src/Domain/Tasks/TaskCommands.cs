using Propeller.Domain.Common;

namespace Propeller.Domain.Tasks;

/// <summary>What can be asked of a task. Time enters as data (<c>At</c>), read by the handler from TimeProvider.</summary>
public abstract record TaskCommand
{
    private TaskCommand()
    {
    }

    public abstract TaskId TaskId { get; init; }

    public abstract DateTimeOffset At { get; init; }

    public sealed record CreateTask(TaskId TaskId, TaskSpec Spec, DateTimeOffset At) : TaskCommand;

    /// <summary>Changes the fields <paramref name="Patch"/> sets, on the spec the task has when this is decided.</summary>
    public sealed record UpdateTask(TaskId TaskId, TaskSpecPatch Patch, DateTimeOffset At) : TaskCommand;

    public sealed record StartTask(TaskId TaskId, DateTimeOffset At, string? RequestedBy = null) : TaskCommand;

    public sealed record DispatchTask(TaskId TaskId, string PropletId, DateTimeOffset At, EquatableMap? ExtraEnv = null) : TaskCommand;

    /// <summary>A plugin refused the placement or the dispatch: the waiting attempt fails with the reason.</summary>
    public sealed record BlockDispatch(TaskId TaskId, string Reason, DateTimeOffset At) : TaskCommand;

    public sealed record DeferDispatch(TaskId TaskId, string Reason, DateTimeOffset At) : TaskCommand;

    /// <summary>
    /// A result from a proplet: <paramref name="Error"/> set means the run failed. With <paramref name="PropletId"/>,
    /// a result from a proplet other than the one running the task is ignored (a late answer after a re-dispatch). With
    /// <paramref name="Attempt"/> (our proplet echoes the start's), a result of another attempt than the current one is
    /// ignored (the stopped result of a run that a restart replaced); without it (the original proplet) it applies to
    /// the current attempt. <paramref name="StillRunning"/>: the proplet says the run goes on after this result (our
    /// proplet's "started" result of a daemon or a served HTTP proxy). <paramref name="RunEnded"/>: the proplet says this
    /// result is the end of such a run (it ended on its own; our proplet's <c>"running": false</c>).
    /// </summary>
    public sealed record RecordResult(TaskId TaskId, string? Results, string? Error, DateTimeOffset At, string? PropletId = null, int? Attempt = null, bool StillRunning = false, bool RunEnded = false, int? Dispatch = null) : TaskCommand;

    /// <summary>
    /// The task's proplet went offline: wait for another one, or fail once <paramref name="MaxRedispatches"/> is used up.
    /// When the run it loses was dispatched at least <paramref name="ResetAfter"/> before (not zero), the re-dispatches
    /// before count no longer (as Kubernetes forgets a container's crash back-off after it ran 10 minutes): a daemon
    /// that serves for months on edge devices that now and then go away is not failed at the fourth loss, while a task
    /// whose proplets vanish soon after taking it (it kills them) still is.
    /// </summary>
    public sealed record RedispatchTask(TaskId TaskId, string Reason, int MaxRedispatches, DateTimeOffset At, TimeSpan ResetAfter = default) : TaskCommand;

    /// <summary>
    /// The task's proplet said what it holds and this attempt is not among it (its start was lost: published while the
    /// proplet had no session): the same start is sent again, recorded when the task still runs there at that attempt.
    /// After <paramref name="MaxResends"/> such sends the proplet is taken not to run it: the task is re-dispatched (or
    /// failed at <paramref name="MaxRedispatches"/>) instead. Within <paramref name="Interval"/> of the last send nothing
    /// is sent: every manager node handles a proplet's discovery, so one report reaches each, and the first node's send
    /// is enough (a proplet reports at most every 10 s). <paramref name="RedispatchResetAfter"/>: <see cref="RedispatchTask.ResetAfter"/>, for a serving task (its
    /// "started" result says the run went on; a running task's proplet that never took its start ran nothing).
    /// </summary>
    public sealed record ResendStart(TaskId TaskId, string PropletId, int Attempt, string Reason, int MaxResends, int MaxRedispatches, TimeSpan Interval, DateTimeOffset At, TimeSpan RedispatchResetAfter = default) : TaskCommand;

    public sealed record StopTask(TaskId TaskId, string Reason, DateTimeOffset At) : TaskCommand;

    public sealed record SkipTask(TaskId TaskId, string Reason, DateTimeOffset At) : TaskCommand;

    public sealed record DeleteTask(TaskId TaskId, DateTimeOffset At) : TaskCommand;

    /// <summary>Records the outcome of one invocation of a latent task (it changes nothing else about the task).</summary>
    public sealed record RecordInvocation(TaskId TaskId, string InvocationId, string? PropletId, string? Results, string? Error, DateTimeOffset At) : TaskCommand;
}
