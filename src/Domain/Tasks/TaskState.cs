namespace Propeller.Domain.Tasks;

/// <summary>A task as folded from its events. <see cref="Exists"/> is false before TaskCreated.</summary>
public sealed record TaskState(
    bool Exists,
    bool Deleted,
    TaskId Id,
    TaskSpec? Spec,
    TaskStatus Status,
    int Attempt,
    string? PropletId,
    string? WaitReason,
    int Redispatches,
    string? Results,
    string? Error,
    DateTimeOffset? CreatedAt,
    DateTimeOffset? UpdatedAt,
    DateTimeOffset? StartTime,
    DateTimeOffset? FinishTime)
{
    public static readonly TaskState Initial = new(false, false, default, null, TaskStatus.Pending, 0, null, null, 0, null, null, null, null, null, null);

    /// <summary>Who asked for the current attempt (the X-User-Id of the start; "system" for internal starts).</summary>
    public string? RequestedBy { get; init; }

    /// <summary>How many of <see cref="Redispatches"/> count toward the limit (TaskCommand.RedispatchTask.ResetAfter).</summary>
    public int RedispatchesCounted { get; init; }

    /// <summary>How often the current dispatch's start was sent again because its proplet reported it did not hold it.</summary>
    public int StartResends { get; init; }

    /// <summary>When the current dispatch's start was last sent again (<see cref="StartResends"/>).</summary>
    public DateTimeOffset? StartResentAt { get; init; }

    /// <summary>True when the current attempt has ended (or the task never ran and was skipped).</summary>
    public bool IsFinished => Status is TaskStatus.Completed or TaskStatus.Failed or TaskStatus.Skipped or TaskStatus.Interrupted;

    /// <summary>True while a broadcast attempt runs: on every proplet, any of which may answer.</summary>
    public bool RunsEverywhere => Status == TaskStatus.Running && PropletId == TaskSpec.BroadcastTarget && Spec is { Broadcast: true };

    /// <summary>Whether the current attempt's completed result left its run going on its proplet (a daemon, a served HTTP
    /// proxy): such a task is stopped as a running one is, and is not deleted before.</summary>
    public bool ResultLeftRunning { get; init; }

    /// <summary>True while the task is completed and its run goes on (<see cref="ResultLeftRunning"/>).</summary>
    public bool IsServing => Status == TaskStatus.Completed && ResultLeftRunning;

    /// <summary>True while the task's run goes on on its proplet: Running, or completed and serving (<see cref="IsServing"/>).
    /// Such a run is started again when its proplet reports it does not hold it, and re-dispatched when its proplet goes away.</summary>
    public bool RunGoesOn => Status == TaskStatus.Running || IsServing;

    /// <summary>Which dispatch of the current attempt the task is on, from 1 (each re-dispatch counts it up): what its start
    /// names, and what a held run's or a result's dispatch is compared with.</summary>
    public int Dispatch => Redispatches + 1;

    /// <summary>True while a start is requested or the task runs on a proplet.</summary>
    public bool IsActive => Status is TaskStatus.Scheduled or TaskStatus.Running;
}
