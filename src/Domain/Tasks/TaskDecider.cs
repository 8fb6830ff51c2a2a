using Propeller.Domain.Common;
using static Propeller.Domain.Tasks.TaskCommand;
using static Propeller.Domain.Tasks.TaskEvent;

namespace Propeller.Domain.Tasks;

/// <summary>
/// The task aggregate as a decider. Unlike the original (spec §2.3, "no guards anywhere"), transitions are guarded:
/// impossible pairs are rejected, repeats are idempotent, a finished task may be started again as a new attempt, and
/// results for a task that is not running are recorded as ignored instead of overwriting its outcome.
/// </summary>
public static class TaskDecider
{
    public static TaskState Initial => TaskState.Initial;

    public static Decision<TaskEvent> Decide(TaskCommand command, TaskState state) => (command, state) switch
    {
        (CreateTask c, { Exists: false }) => Decision<TaskEvent>.Accept(new TaskCreated(c.TaskId, c.Spec, c.At)),
        (CreateTask c, { Deleted: false }) when c.Spec == state.Spec => Decision<TaskEvent>.Accept(),
        (CreateTask c, _) => Rejection.Conflict($"task {c.TaskId} already exists"),

        (DeleteTask, { Deleted: true }) => Decision<TaskEvent>.Accept(),
        (_, { Exists: false } or { Deleted: true }) => Rejection.NotFound($"task {command.TaskId} not found"),

        (RecordInvocation c, _) => Decision<TaskEvent>.Accept(new TaskInvoked(c.TaskId, c.InvocationId, c.PropletId, c.Results, c.Error, c.At)),

        (UpdateTask c, { Spec: { } spec }) when c.Patch.ApplyTo(spec) == spec => Decision<TaskEvent>.Accept(),
        (UpdateTask c, { Spec: { } spec }) => Decision<TaskEvent>.Accept(new TaskUpdated(c.TaskId, c.Patch.ApplyTo(spec), c.At)),

        // Active, or completed while its run goes on (a serving daemon or HTTP proxy): a new attempt would start a second
        // run beside the one still going (stop it first).
        (StartTask, { IsActive: true } or { IsServing: true }) => Decision<TaskEvent>.Accept(),
        // No workflow coordinator runs yet (docs/compatibility.md): a task with dependencies, stored before a create
        // refused them, would run with its dependencies ignored. A Rejection has no 501, so it is a conflict.
        (StartTask c, { Spec.DependsOn.Count: > 0 }) => Rejection.Conflict($"task {c.TaskId} depends on other tasks; workflows are not implemented yet"),
        (StartTask c, { Status: TaskStatus.Pending } or { IsFinished: true }) =>
            Decision<TaskEvent>.Accept(new TaskStartRequested(c.TaskId, state.Attempt + 1, c.At, c.RequestedBy)),

        (DeferDispatch c, { Status: TaskStatus.Scheduled }) when c.Reason == state.WaitReason => Decision<TaskEvent>.Accept(),
        (DeferDispatch c, { Status: TaskStatus.Scheduled }) =>
            Decision<TaskEvent>.Accept(new TaskDispatchDeferred(c.TaskId, state.Attempt, c.Reason, c.At)),
        (DeferDispatch, _) => Decision<TaskEvent>.Accept(),

        (BlockDispatch c, { Status: TaskStatus.Scheduled }) => Decision<TaskEvent>.Accept(new TaskFailed(c.TaskId, state.Attempt, c.Reason, c.At)),
        (BlockDispatch, _) => Decision<TaskEvent>.Accept(),

        (DispatchTask c, { Status: TaskStatus.Scheduled }) =>
            Decision<TaskEvent>.Accept(new TaskDispatched(c.TaskId, state.Attempt, c.PropletId, c.At, c.ExtraEnv is { Count: > 0 } env ? env : null)),
        (DispatchTask c, { Status: TaskStatus.Running }) when c.PropletId == state.PropletId => Decision<TaskEvent>.Accept(),
        (DispatchTask c, _) => Rejection.Conflict($"task {c.TaskId} is {state.Status}, not waiting for a proplet"),

        (RecordResult c, _) when c.Attempt is { } attempt && attempt != state.Attempt =>
            Decision<TaskEvent>.Accept(new TaskResultIgnored(c.TaskId, state.Attempt, $"result of attempt {attempt}; the task is on attempt {state.Attempt}", c.At)),
        (RecordResult c, { Status: TaskStatus.Running }) when c.PropletId is { Length: > 0 } from && state.PropletId is { } current && from != current && !state.RunsEverywhere =>
            Decision<TaskEvent>.Accept(new TaskResultIgnored(c.TaskId, state.Attempt, $"result from proplet {from}; the task runs on {current}", c.At)),
        // A result of an earlier dispatch of the attempt: the task was re-dispatched since (to this proplet too, after it was
        // taken for gone), and this is the run it moved away from, or the "stopped" result of that run's stop.
        (RecordResult c, _) when c.Dispatch is { } dispatch && dispatch < state.Dispatch =>
            Decision<TaskEvent>.Accept(new TaskResultIgnored(c.TaskId, state.Attempt, $"result of dispatch {dispatch}; the task is on dispatch {state.Dispatch}", c.At)),
        (RecordResult c, { Status: TaskStatus.Running }) when !string.IsNullOrEmpty(c.Error) =>
            Decision<TaskEvent>.Accept(new TaskFailed(c.TaskId, state.Attempt, c.Error, c.At)),
        (RecordResult c, { Status: TaskStatus.Running }) =>
            Decision<TaskEvent>.Accept(new TaskCompleted(c.TaskId, state.Attempt, c.Results, c.At, !c.RunEnded && (c.StillRunning || state.Spec is { Daemon: true }) ? true : null)),

        // The end of a serving run (our proplet's result with "running": false), from the proplet that runs it: a daemon
        // or a served proxy that ended on its own. A broadcast one runs on many proplets; one of them ending ends nothing.
        (RecordResult c, { IsServing: true }) when c.RunEnded && (c.PropletId is not { Length: > 0 } from || from == state.PropletId) && state.PropletId != TaskSpec.BroadcastTarget =>
            !string.IsNullOrEmpty(c.Error)
                ? Decision<TaskEvent>.Accept(new TaskFailed(c.TaskId, state.Attempt, c.Error, c.At))
                : Decision<TaskEvent>.Accept(new TaskServingEnded(c.TaskId, state.Attempt, c.Results, c.At)),
        (RecordResult c, { IsServing: true, StartResends: > 0 }) when c.StillRunning && c.PropletId is { Length: > 0 } from && from == state.PropletId =>
            Decision<TaskEvent>.Accept(new TaskServingResumed(c.TaskId, state.Attempt, from, c.At)),
        (RecordResult c, _) =>
            Decision<TaskEvent>.Accept(new TaskResultIgnored(c.TaskId, state.Attempt, $"result for a task that is {state.Status}", c.At)),

        (RedispatchTask c, { RunGoesOn: true }) when CountedRedispatches(c, state) >= c.MaxRedispatches =>
            Decision<TaskEvent>.Accept(new TaskFailed(c.TaskId, state.Attempt, $"{c.Reason}; not re-dispatched (limit {c.MaxRedispatches})", c.At)),
        (RedispatchTask c, { RunGoesOn: true }) =>
            Decision<TaskEvent>.Accept(new TaskRedispatchRequested(
                c.TaskId, state.Attempt, state.PropletId!, c.Reason, state.Redispatches + 1, c.At,
                CountedRedispatches(c, state) + 1 is var counted && counted != state.Redispatches + 1 ? counted : null)),
        (RedispatchTask, _) => Decision<TaskEvent>.Accept(),

        (ResendStart c, { RunGoesOn: true }) when c.PropletId == state.PropletId && c.Attempt == state.Attempt && !state.RunsEverywhere
                                                   && state.StartResentAt is { } last && c.At - last < c.Interval =>
            Decision<TaskEvent>.Accept(),
        (ResendStart c, { RunGoesOn: true }) when c.PropletId == state.PropletId && c.Attempt == state.Attempt && !state.RunsEverywhere =>
            state.StartResends < c.MaxResends
                ? Decision<TaskEvent>.Accept(new TaskStartResent(c.TaskId, c.Attempt, c.PropletId, c.Reason, c.At))
                : Decide(new RedispatchTask(
                    c.TaskId, $"proplet {c.PropletId} did not take its start, sent {state.StartResends + 1} times", c.MaxRedispatches, c.At,
                    // A run the proplet never took did not go on, however long ago it was dispatched; a serving one did.
                    state.IsServing ? c.RedispatchResetAfter : TimeSpan.Zero), state),
        (ResendStart, _) => Decision<TaskEvent>.Accept(),

        (StopTask c, { IsActive: true } or { IsServing: true }) => Decision<TaskEvent>.Accept(new TaskStopped(c.TaskId, state.Attempt, c.Reason, c.At)),
        (StopTask, { Status: TaskStatus.Interrupted }) => Decision<TaskEvent>.Accept(),
        (StopTask c, _) => Rejection.Conflict($"task {c.TaskId} is {state.Status}, not running"),

        (SkipTask c, { Status: TaskStatus.Pending }) => Decision<TaskEvent>.Accept(new TaskSkipped(c.TaskId, c.Reason, c.At)),
        (SkipTask, { Status: TaskStatus.Skipped }) => Decision<TaskEvent>.Accept(),
        (SkipTask c, _) => Rejection.Conflict($"task {c.TaskId} is {state.Status}, only a pending task can be skipped"),

        (DeleteTask c, { IsActive: true }) => Rejection.Conflict($"task {c.TaskId} is {state.Status}; stop it before deleting it"),
        (DeleteTask c, { IsServing: true }) => Rejection.Conflict($"task {c.TaskId} is completed and still running on proplet {state.PropletId} (a daemon or a served HTTP proxy); stop it before deleting it"),
        (DeleteTask c, _) => Decision<TaskEvent>.Accept(new TaskDeleted(c.TaskId, c.At)),

        _ => Rejection.Conflict($"{command.GetType().Name} is not possible while task {command.TaskId} is {state.Status}"),
    };

    /// <summary>The re-dispatches of the current attempt that count toward the limit: none once the run it loses was
    /// dispatched <see cref="RedispatchTask.ResetAfter"/> or longer before.</summary>
    private static int CountedRedispatches(RedispatchTask c, TaskState state) =>
        c.ResetAfter > TimeSpan.Zero && state.StartTime is { } began && c.At - began >= c.ResetAfter ? 0 : state.RedispatchesCounted;

    public static TaskState Evolve(TaskState state, TaskEvent @event) => @event switch
    {
        TaskCreated e => state with
        {
            Exists = true,
            Id = e.TaskId,
            Spec = e.Spec,
            Status = TaskStatus.Pending,
            PropletId = e.Spec.PropletId,
            CreatedAt = e.CreatedAt,
        },
        TaskUpdated e => state with { Spec = e.Spec, UpdatedAt = e.UpdatedAt },
        TaskStartRequested e => state with
        {
            Status = TaskStatus.Scheduled,
            Attempt = e.Attempt,
            WaitReason = null,
            Redispatches = 0,
            RedispatchesCounted = 0,
            Results = null,
            Error = null,
            StartTime = null,
            FinishTime = null,
            UpdatedAt = e.RequestedAt,
            RequestedBy = e.RequestedBy,
            StartResends = 0,
            StartResentAt = null,
        },
        TaskDispatchDeferred e => state with { WaitReason = e.Reason },
        TaskDispatched e => state with
        {
            Status = TaskStatus.Running,
            PropletId = e.PropletId,
            WaitReason = null,
            StartTime = e.DispatchedAt,
            UpdatedAt = e.DispatchedAt,
            StartResends = 0,
            StartResentAt = null,

            // Environment a plugin added for this dispatch is kept with the task, as in the original (spec §7.8).
            Spec = e.ExtraEnv is { Count: > 0 } extra && state.Spec is { } spec
                ? spec with { Env = spec.Env.SetItems(extra) }
                : state.Spec,
        },
        // A serving run (a daemon or HTTP proxy whose "started" result completed it) re-dispatched from a proplet that
        // went away: its results ("started at port N" on that proplet) and finish time were the lost run's, and stayed
        // on the task while it ran again elsewhere (a finish before its start; a port on a proplet that is gone).
        TaskRedispatchRequested e => state with
        {
            Status = TaskStatus.Scheduled,
            PropletId = state.Spec?.PropletId,
            Redispatches = e.Redispatches,
            RedispatchesCounted = e.Counted ?? e.Redispatches,
            WaitReason = e.Reason,
            StartTime = null,
            Results = null,
            FinishTime = null,
            ResultLeftRunning = false,
            UpdatedAt = e.RequestedAt,
        },
        TaskCompleted e => state with { Status = TaskStatus.Completed, Results = e.Results, FinishTime = e.CompletedAt, UpdatedAt = e.CompletedAt, ResultLeftRunning = e.StillRunning == true },
        TaskServingEnded e => state with { Results = e.Results, FinishTime = e.EndedAt, UpdatedAt = e.EndedAt, ResultLeftRunning = false },
        TaskFailed e => state with { Status = TaskStatus.Failed, Error = e.Error, FinishTime = e.FailedAt, UpdatedAt = e.FailedAt },
        TaskStopped e => state with { Status = TaskStatus.Interrupted, Error = e.Reason, FinishTime = e.StoppedAt, UpdatedAt = e.StoppedAt },
        TaskSkipped e => state with { Status = TaskStatus.Skipped, UpdatedAt = e.SkippedAt },
        TaskResultIgnored => state,
        TaskStartResent e => state with { StartResends = state.StartResends + 1, StartResentAt = e.ResentAt },
        TaskServingResumed => state with { StartResends = 0, StartResentAt = null },
        TaskInvoked => state,
        // A deleted task is gone for every command: its module (the bulk of its view, kept for ever) is dropped from the
        // state; its events still hold it.
        TaskDeleted e => state with { Deleted = true, UpdatedAt = e.DeletedAt, Spec = state.Spec is { } spec ? spec with { File = null } : null },
        _ => state,
    };
}
