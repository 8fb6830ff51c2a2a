using Propeller.Plugins.Jobs;

namespace Propeller.Plugins.Hosting;

/// <summary>
/// Settings of the manager's plugin host. <see cref="FromEnvironment"/> reads MANAGER_PLUGIN_DIR and the
/// MANAGER_PLUGIN_* variables documented in docs/plugins.md.
/// </summary>
public sealed class PluginHostOptions
{
    /// <summary>The plugin directory; null or empty means no plugins (spec §7.1).</summary>
    public string? Directory { get; set; }

    /// <summary>Limits for a plugin without a manifest, or for the values its manifest leaves out.</summary>
    public PluginLimits DefaultLimits { get; set; } = PluginLimits.Default;

    /// <summary>Most instances of one plugin alive at once (calls beyond it wait). Each call has an instance to itself.
    /// A plugin with notification hooks (<c>on_task_start</c>, <c>on_task_complete</c>) has at least 2: the notifications
    /// hold at most half (at least one), and the hooks a request waits for must always find one free.</summary>
    public int MaxInstancesPerPlugin { get; set; } = Math.Max(4, Environment.ProcessorCount * 2);

    /// <summary>Bytes of a plugin's stdout/stderr kept per call; the rest is counted and dropped.</summary>
    public int OutputCaptureBytes { get; set; } = 64 * 1024;

    /// <summary>
    /// Most time a plugin's start function may run when the plugin is loaded (at start-up and on every reload), whatever
    /// its <c>timeout_ms</c> (up to a day): a load holds the start-up or the reload. A plugin whose start runs longer stays
    /// loaded without a ready instance (a warning): later instances (pool, jobs) run their start under the call's own
    /// limits, and a call whose start times out fails (an authorize denies), where skipping the plugin left the chain
    /// without it, which allows everything.
    /// </summary>
    public TimeSpan LoadTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>How long <c>DrainAsync</c> waits for outstanding on_task_start/on_task_complete calls at shutdown.</summary>
    public TimeSpan DrainTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Most notification calls (on_task_*) of one plugin queued or running at once; beyond it that plugin's new
    /// ones are dropped and counted. Per plugin: one slow plugin filling a shared budget made every other plugin's
    /// notifications drop.</summary>
    public int MaxPendingNotifications { get; set; } = 1024;

    /// <summary>The job bridge (seed 004). Null disables <c>queue.enqueue</c> (it answers ENOSYS) and the job worker.</summary>
    public PluginJobOptions? Jobs { get; set; }

    /// <summary>Reads MANAGER_PLUGIN_DIR, and MANAGER_PLUGIN_JOBS_DB / MANAGER_PLUGIN_JOBS_SCHEMA for the job bridge.</summary>
    public static PluginHostOptions FromEnvironment(Func<string, string?>? read = null)
    {
        read ??= Environment.GetEnvironmentVariable;
        var options = new PluginHostOptions { Directory = read("MANAGER_PLUGIN_DIR") };
        if (read("MANAGER_PLUGIN_JOBS_DB") is { Length: > 0 } connection)
        {
            options.Jobs = new PluginJobOptions
            {
                ConnectionString = connection,
                Schema = read("MANAGER_PLUGIN_JOBS_SCHEMA") is { Length: > 0 } schema ? schema : PluginJobOptions.DefaultSchema,
            };
        }

        return options;
    }
}
