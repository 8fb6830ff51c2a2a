namespace Propeller.Application.Scheduling;

/// <summary>A proplet as the scheduler sees it (from the proplet view projection).</summary>
public sealed record PropletCandidate(string Id, bool Alive, int RunningTasks, IReadOnlySet<string> Tags, ulong TotalMemoryBytes);
