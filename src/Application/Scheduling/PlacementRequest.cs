namespace Propeller.Application.Scheduling;

/// <summary>
/// What a task asks of a proplet: a pinned proplet (plugin constraints do not apply to it, as in the original),
/// or tags it must carry and a minimum of memory; its priority matters to <see cref="SchedulingPolicy.Priority"/>.
/// </summary>
public sealed record PlacementRequest(string? PinnedPropletId, IReadOnlySet<string> RequiredTags, ulong MinMemoryBytes, int Priority = Domain.Tasks.TaskSpec.DefaultPriority)
{
    public static PlacementRequest Any { get; } = new(null, new HashSet<string>(), 0);
}
