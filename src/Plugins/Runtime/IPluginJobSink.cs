namespace Propeller.Plugins.Runtime;

/// <summary>
/// What <c>queue.enqueue</c> hands a job to (the job bridge, seed 004). Called on the plugin's guest thread, so it is
/// synchronous; it returns an errno-like code (<see cref="PluginErrno"/>) and the job's id on success. The guest's time
/// limit cannot interrupt a host call: the sink must give up within <c>timeLeft</c> (what is left of the hook's time) or
/// when <c>cancellationToken</c> (the hook's caller's) is cancelled.
/// </summary>
public interface IPluginJobSink
{
    int Enqueue(LoadedPlugin plugin, string? hook, string taskType, ReadOnlySpan<byte> payload, ReadOnlySpan<byte> options, TimeSpan timeLeft, CancellationToken cancellationToken, out Guid jobId);
}

/// <summary>Return codes of the host imports (WASI errno values where one fits; docs/plugins.md).</summary>
public static class PluginErrno
{
    public const int Success = 0;
    public const int Exists = 20;
    public const int Fault = 21;
    public const int Invalid = 28;
    public const int IO = 29;
    public const int NoSys = 52;
    public const int Permission = 63;

    /// <summary>Not a WASI errno: the plugin's enqueue rate limit is used up (ERATELIMIT).</summary>
    public const int RateLimit = 1001;
}
