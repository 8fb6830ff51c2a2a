namespace Propeller.Infrastructure.Projections;

/// <summary>Settings of the async projection daemon (section "Projections").</summary>
public sealed class ProjectionDaemonOptions
{
    public const string Section = "Projections";

    /// <summary>Events loaded and applied per transaction.</summary>
    public int BatchSize { get; set; } = 1000;

    /// <summary>How long to wait before polling again when a projection is caught up.</summary>
    public TimeSpan PollInterval { get; set; } = TimeSpan.FromMilliseconds(100);

    /// <summary>How long a node's claim on a projection lasts without renewal; another node takes over after it.</summary>
    public TimeSpan LeaseDuration { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>How often a node without the lease tries to take it.</summary>
    public TimeSpan LeaseRetryInterval { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>Attempts to apply a failing event before the projection is paused (never skipped).</summary>
    public int MaxApplyAttempts { get; set; } = 3;

    /// <summary>Delay before the first retry; grows linearly with the attempt.</summary>
    public TimeSpan RetryDelay { get; set; } = TimeSpan.FromMilliseconds(200);

    /// <summary>This node's identity in lease rows; defaults to host name, process id and a random suffix.</summary>
    public string NodeId { get; set; } = $"{Environment.MachineName}:{Environment.ProcessId}:{Guid.NewGuid():N}"[..^24];
}
