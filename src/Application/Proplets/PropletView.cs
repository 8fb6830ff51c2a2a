using Propeller.Domain.Proplets;

namespace Propeller.Application.Proplets;

/// <summary>A proplet as the registry shows it: record, liveness inputs, the tasks running on it, and since when it is
/// offline (when it is).</summary>
public sealed record PropletView(
    PropletId Id,
    string Name,
    PropletMetadata Metadata,
    bool Offline,
    DateTimeOffset? LastAliveAt,
    IReadOnlyList<DateTimeOffset> AliveHistory,
    int RunningTasks,
    DateTimeOffset? OfflineSince = null)
{
    /// <summary>Alive = not marked offline and a heartbeat within <paramref name="window"/> of <paramref name="now"/>.</summary>
    public bool IsAlive(DateTimeOffset now, TimeSpan window) => !Offline && LastAliveAt is { } last && now - last <= window;
}
