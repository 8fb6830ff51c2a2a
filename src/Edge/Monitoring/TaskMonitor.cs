using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Propeller.Contracts.Mqtt;
using Propeller.Edge.Configuration;
using Propeller.Edge.Messaging;
using Propeller.Edge.Tasks;

namespace Propeller.Edge.Monitoring;

/// <summary>
/// Per-task metrics (spec §1.7): every profile interval, the first 100 ms and one interval after the task starts (as the
/// original's: a task shorter than that sends none), one sample of the process
/// that runs it (the proplet itself in-process, the child with an external runtime), published on
/// <c>control/proplet/task_metrics</c> with aggregates over the retained history. Memory is sent in real bytes (the
/// Rust proplet's was 1024× too large); the timestamp is RFC 3339. With an external runtime
/// (<paramref name="childProcesses"/>) an interval when the task has no live child (not started yet, or exited while its
/// output is read) sends no sample: the proplet's own process stood in for it, and its CPU time against the child's
/// previous sample gave thousands of percent. A failed interval is logged and the next one samples again; only the
/// end of the task (<c>cancellationToken</c>) ends the monitor.
/// </summary>
public sealed class TaskMonitor(
    PropletSettings settings, IPropletPublisher publisher, TimeProvider time, ILogger<TaskMonitor> logger, bool childProcesses = false)
{
    /// <summary>Samples <paramref name="task"/> until <paramref name="cancellationToken"/> is cancelled (the task ended).</summary>
    public async Task MonitorAsync(RunningTask task, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(task);
        var profile = task.Request.Monitoring;
        if (!profile.Enabled || !profile.ExportToMqtt)
        {
            return;
        }

        var history = new SampleHistory(profile.RetainHistory ? profile.HistorySize : 0);
        var started = time.GetTimestamp();
        (TimeSpan Cpu, long At)? last = null;
        var failing = false;
        try
        {
            await Task.Delay(TimeSpan.FromMilliseconds(100), time, cancellationToken);
            while (!cancellationToken.IsCancellationRequested)
            {
                await Task.Delay(profile.Interval, time, cancellationToken);
                try
                {
                    if (Sample(task, profile, time.GetElapsedTime(started), ref last) is not { } sample)
                    {
                        continue;
                    }

                    history.Add(sample);
                    var message = new TaskMetricsMessage(
                        task.Id, settings.EntityId, sample, history.Aggregate(), time.GetUtcNow().ToString("O", CultureInfo.InvariantCulture));
                    await publisher.PublishAsync(Topics.TaskMetrics, JsonSerializer.SerializeToUtf8Bytes(message), cancellationToken);
                    failing = false;
                }
                catch (Exception ex) when (ex is not OutOfMemoryException && !cancellationToken.IsCancellationRequested)
                {
                    // Whatever fails in one interval (the process gone between two reads, a publish refused), the next
                    // one tries again: a daemon runs for months, and one bad interval used to end its metrics for
                    // good. The task's own run and result do not depend on its metrics. The first failure of a run of
                    // them is logged, not each one.
                    if (!failing)
                    {
                        EdgeLog.TaskMetricsSampleFailed(logger, task.Id, ex.Message);
                        failing = true;
                    }
                }
            }
        }
        catch (Exception ex) when (ex is not OutOfMemoryException && cancellationToken.IsCancellationRequested)
        {
            // the task ended (and a sample or publish under way may have failed with it)
        }
    }

    /// <summary>One sample of the process that runs <paramref name="task"/>; null when it runs in a child that is not
    /// there (see the class).</summary>
    private ProcessMetrics? Sample(RunningTask task, MonitoringProfile profile, TimeSpan uptime, ref (TimeSpan Cpu, long At)? last)
    {
        using var process = Of(task);
        if (process is null)
        {
            return null;
        }

        var cpu = process.TotalProcessorTime;
        var now = time.GetTimestamp();
        var percent = last is { } l && time.GetElapsedTime(l.At, now) is { TotalMilliseconds: > 0 } wall
            ? 100.0 * (cpu - l.Cpu).TotalMilliseconds / wall.TotalMilliseconds
            : 0;
        last = (cpu, now);
        var (read, written) = profile.CollectDiskIo ? SystemSampler.DiskIo(process.Id) : (0UL, 0UL);
        return new ProcessMetrics
        {
            CpuPercent = profile.CollectCpu ? Math.Max(0, percent) : 0,
            MemoryBytes = profile.CollectMemory ? (ulong)Math.Max(0, process.WorkingSet64) : 0,
            DiskReadBytes = read,
            DiskWriteBytes = written,
            UptimeSeconds = (ulong)uptime.TotalSeconds,
            ThreadCount = profile.CollectThreads ? (uint)process.Threads.Count : 0,
            FileDescriptorCount = profile.CollectFileDescriptors ? SystemSampler.FileDescriptors(process.Id) : 0,
        };
    }

    private Process? Of(RunningTask task)
    {
        if (!childProcesses)
        {
            return Process.GetCurrentProcess();
        }

        try
        {
            return task.ProcessId is { } pid ? Process.GetProcessById(pid) : null;
        }
        catch (ArgumentException)
        {
            return null; // it exited since ProcessId was read
        }
    }
}
