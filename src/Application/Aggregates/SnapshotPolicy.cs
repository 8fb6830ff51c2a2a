namespace Propeller.Application.Aggregates;

/// <summary>Save a snapshot (typed <paramref name="SnapshotType"/>, e.g. "task_state.v1") every <paramref name="Every"/> events.</summary>
public sealed record SnapshotPolicy(string SnapshotType, int Every);
