namespace Propeller.Application.Scheduling;

/// <summary>The scheduler's answer: a proplet, or why the task has to wait.</summary>
public sealed record Placement(string? PropletId, string? WaitReason)
{
    public static Placement On(string propletId) => new(propletId, null);

    public static Placement Wait(string reason) => new(null, reason);
}
