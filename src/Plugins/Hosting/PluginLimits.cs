namespace Propeller.Plugins.Hosting;

/// <summary>Resource limits of one plugin: per hook call, and per job run (seed 004).</summary>
public sealed record PluginLimits
{
    public static PluginLimits Default { get; } = new();

    /// <summary>Fuel for one hook call (alloc, copy, hook, free). Default 10M.</summary>
    public long Fuel { get; init; } = 10_000_000;

    /// <summary>Linear memory cap of an instance, in MiB. Default 64.</summary>
    public int MemoryMb { get; init; } = 64;

    /// <summary>Wall-clock cap of one hook call. Default 1 s.</summary>
    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>Fuel for one <c>handle_job</c> run. Default 10M.</summary>
    public long JobFuel { get; init; } = 10_000_000;

    /// <summary>Memory cap of a job instance, in MiB. Default 64.</summary>
    public int JobMemoryMb { get; init; } = 64;

    /// <summary>Wall-clock cap of one job run. Default 30 s.</summary>
    public TimeSpan JobTimeout { get; init; } = TimeSpan.FromSeconds(30);
}
