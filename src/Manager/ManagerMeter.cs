using System.Diagnostics.Metrics;

namespace Propeller.Manager;

/// <summary>The manager's own meter, shared by its instruments (API requests, command batches); /metrics exports it.</summary>
public static class ManagerMeter
{
    /// <summary>The meter's name, for listeners (the benchmarks).</summary>
    public const string Name = "Propeller.Manager";

    internal static readonly Meter Meter = new(Name);
}
