using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace Propeller.Plugins.Runtime;

/// <summary>
/// The "Propeller.Plugins" meter (exported by the manager's /metrics with every Propeller* meter): calls, denies and
/// failures per plugin and hook, call duration, and the job bridge's enqueues and runs.
/// </summary>
public sealed class PluginMetrics : IDisposable
{
    public const string MeterName = "Propeller.Plugins";

    private readonly Meter _meter;
    private readonly Counter<long> _calls;
    private readonly Counter<long> _denies;
    private readonly Counter<long> _failures;
    private readonly Counter<long> _dropped;
    private readonly Counter<long> _reloadKept;
    private readonly Histogram<double> _duration;
    private readonly Counter<long> _jobsEnqueued;
    private readonly Counter<long> _jobsRejected;
    private readonly Counter<long> _jobsRun;

    public PluginMetrics(IMeterFactory? meterFactory = null)
    {
        _meter = meterFactory?.Create(MeterName) ?? new Meter(MeterName);
        _calls = _meter.CreateCounter<long>("propeller.plugins.calls", description: "Plugin hook calls");
        _denies = _meter.CreateCounter<long>("propeller.plugins.denies", description: "Hook calls that denied (failures included)");
        _failures = _meter.CreateCounter<long>("propeller.plugins.failures", description: "Hook calls that trapped, timed out, ran out of a limit or answered garbage");
        _dropped = _meter.CreateCounter<long>("propeller.plugins.notifications.dropped", description: "on_task_* notifications dropped because too many of the plugin's were pending");
        _reloadKept = _meter.CreateCounter<long>("propeller.plugins.reload.kept", description: "Plugins whose file failed to load on a reload and whose previous version was kept");
        _duration = _meter.CreateHistogram<double>("propeller.plugins.call.duration", unit: "s", description: "Plugin hook call duration");
        _jobsEnqueued = _meter.CreateCounter<long>("propeller.plugins.jobs.enqueued", description: "Jobs enqueued by plugins");
        _jobsRejected = _meter.CreateCounter<long>("propeller.plugins.jobs.rejected", description: "queue.enqueue calls refused (errno tag)");
        _jobsRun = _meter.CreateCounter<long>("propeller.plugins.jobs.runs", description: "Job runs by outcome");
    }

    /// <summary>The meter itself (from the factory when one was given).</summary>
    public Meter Meter => _meter;

    internal void Call(string plugin, string hook, TimeSpan duration, PluginFailureKind? failure)
    {
        var tags = new TagList { { "plugin", plugin }, { "hook", hook } };
        _calls.Add(1, tags);
        _duration.Record(duration.TotalSeconds, tags);
        if (failure is { } kind)
        {
            Failure(plugin, hook, kind);
        }
    }

    /// <summary>A failure found after the call returned (a malformed answer): counted without counting the call again.</summary>
    internal void Failure(string plugin, string hook, PluginFailureKind kind) =>
        _failures.Add(1, new TagList { { "plugin", plugin }, { "hook", hook }, { "failure", FailureTag(kind) } });

    internal void Deny(string plugin, string hook) => _denies.Add(1, new TagList { { "plugin", plugin }, { "hook", hook } });

    internal void NotificationDropped(string plugin, string hook) => _dropped.Add(1, new TagList { { "plugin", plugin }, { "hook", hook } });

    internal void ReloadKept(string plugin) => _reloadKept.Add(1, new KeyValuePair<string, object?>("plugin", plugin));

    internal void JobEnqueued(string plugin) => _jobsEnqueued.Add(1, new KeyValuePair<string, object?>("plugin", plugin));

    internal void JobRejected(string plugin, int errno) =>
        _jobsRejected.Add(1, new TagList { { "plugin", plugin }, { "errno", errno } });

    internal void JobRun(string plugin, string outcome) =>
        _jobsRun.Add(1, new TagList { { "plugin", plugin }, { "outcome", outcome } });

    private static string FailureTag(PluginFailureKind kind) => kind switch
    {
        PluginFailureKind.Timeout => "timeout",
        PluginFailureKind.OutOfFuel => "fuel",
        PluginFailureKind.MemoryLimit => "memory",
        PluginFailureKind.Malformed => "malformed",
        PluginFailureKind.Abi => "abi",
        _ => "trap",
    };

    public void Dispose() => _meter.Dispose();
}
