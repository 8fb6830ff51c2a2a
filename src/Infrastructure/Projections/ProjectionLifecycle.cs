namespace Propeller.Infrastructure.Projections;

/// <summary>When a projection runs: in the append transaction, or in the daemon after commit.</summary>
public enum ProjectionLifecycle
{
    /// <summary>Written in the same transaction as the events: strongly consistent, adds append latency.</summary>
    Inline,

    /// <summary>Run by the projection daemon from a checkpoint: eventually consistent, rebuildable.</summary>
    Async,
}
