using Propeller.Application.EventStore;

namespace Propeller.Infrastructure.Projections;

/// <summary>An async projection's checkpoint, health and lease, as stored in its row.</summary>
public sealed record ProjectionStatus(
    string Name,
    GlobalPosition Checkpoint,
    long EventsApplied,
    string Status,
    string? Error,
    string? FailedStreamId,
    long? FailedVersion,
    bool RebuildRequested,
    int Rebuilds,
    string? LeaseOwner,
    DateTimeOffset? LeaseExpiresAt)
{
    public const string Running = "running";

    public const string Paused = "paused";

    public bool IsPaused => Status == Paused;
}
