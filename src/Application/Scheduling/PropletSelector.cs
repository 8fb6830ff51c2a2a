namespace Propeller.Application.Scheduling;

/// <summary>
/// Chooses a proplet for a task: only alive proplets, only those carrying every required tag and at least the
/// required memory, then by policy. Pure apart from the round-robin positions, which the caller keeps (so a scheduler
/// that restarts, or runs on another node, may start from any position without harm).
/// </summary>
public static class PropletSelector
{
    public static Placement Select(SchedulingPolicy policy, PlacementRequest request, IReadOnlyList<PropletCandidate> proplets, RoundRobinCursors roundRobin)
    {
        ArgumentNullException.ThrowIfNull(request);
        ArgumentNullException.ThrowIfNull(proplets);
        ArgumentNullException.ThrowIfNull(roundRobin);
        if (request.PinnedPropletId is { } pinned)
        {
            var target = proplets.FirstOrDefault(p => p.Id == pinned);
            return target switch
            {
                null => Placement.Wait($"pinned proplet {pinned} is unknown"),
                { Alive: false } => Placement.Wait($"pinned proplet {pinned} is not alive"),
                _ => Placement.On(pinned),
            };
        }

        var alive = proplets.Where(p => p.Alive).ToList();
        if (alive.Count == 0)
        {
            return Placement.Wait("no active proplets available");
        }

        var eligible = alive
            .Where(p => request.RequiredTags.All(p.Tags.Contains) && p.TotalMemoryBytes >= request.MinMemoryBytes)
            .OrderBy(p => p.Id, StringComparer.Ordinal)
            .ToList();
        if (eligible.Count == 0)
        {
            return Placement.Wait("no proplet satisfies the required tags and memory");
        }

        switch (policy)
        {
            case SchedulingPolicy.LeastLoaded:
            case SchedulingPolicy.Priority when request.Priority >= Domain.Tasks.TaskSpec.DefaultPriority:
                return Placement.On(eligible.MinBy(p => p.RunningTasks)!.Id);
            default:
                return Placement.On(eligible[roundRobin.Next(eligible)].Id);
        }
    }

    /// <summary>The order pending tasks are placed in: higher priority first, then oldest request first.</summary>
    public static IEnumerable<T> InDispatchOrder<T>(IEnumerable<T> pending, Func<T, int> priority, Func<T, DateTimeOffset> requestedAt) =>
        pending.OrderByDescending(priority).ThenBy(requestedAt);

    /// <summary>
    /// A broadcast task's placement: dispatched to every proplet (<see cref="Domain.Tasks.TaskSpec.BroadcastTarget"/>)
    /// while at least one is alive, else it waits as any task does. Broadcast to nobody, it stayed Running for ever: no
    /// proplet would answer it, and it runs on no proplet whose going offline could re-dispatch it.
    /// </summary>
    public static Placement Broadcast(IEnumerable<PropletCandidate> proplets) =>
        proplets.Any(p => p.Alive) ? Placement.On(Domain.Tasks.TaskSpec.BroadcastTarget) : Placement.Wait("no active proplets available");
}
