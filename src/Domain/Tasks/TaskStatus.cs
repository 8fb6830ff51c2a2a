namespace Propeller.Domain.Tasks;

/// <summary>
/// Task states with the original's wire values (spec propeller-manager.md §2.3): serialised as these integers.
/// </summary>
public enum TaskStatus
{
    /// <summary>Created, never started (or its start not requested yet).</summary>
    Pending = 0,

    /// <summary>A start was requested and the task waits for a proplet (the original never set this state).</summary>
    Scheduled = 1,

    /// <summary>Dispatched to a proplet; no result yet.</summary>
    Running = 2,

    /// <summary>The current attempt ended with a result.</summary>
    Completed = 3,

    /// <summary>The current attempt ended with an error.</summary>
    Failed = 4,

    /// <summary>Skipped by a workflow (run_if not satisfied).</summary>
    Skipped = 5,

    /// <summary>The current attempt was stopped before it finished.</summary>
    Interrupted = 6,
}
