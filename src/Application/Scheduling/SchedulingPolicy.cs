namespace Propeller.Application.Scheduling;

/// <summary>How a proplet is chosen among the eligible ones (spec §5: round-robin is the original's only policy).</summary>
public enum SchedulingPolicy
{
    /// <summary>Each eligible proplet in turn, in id order.</summary>
    RoundRobin,

    /// <summary>The eligible proplet with the fewest running tasks (ties: id order).</summary>
    LeastLoaded,

    /// <summary>Tasks at or above the default priority (50) take the least-loaded proplet; lower-priority tasks are
    /// spread round-robin, so they do not crowd the idlest proplet ahead of important work. (Waiting tasks are always
    /// placed highest priority first.)</summary>
    Priority,
}
