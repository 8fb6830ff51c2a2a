using System.Diagnostics;
using System.Text.Json;
using Microsoft.Extensions.Logging.Abstractions;
using Propeller.Contracts.Mqtt;
using Propeller.Edge.Monitoring;
using Propeller.Edge.Tasks;

namespace Propeller.Edge.Tests;

public sealed class TaskMonitorTests
{
    /// <summary>
    /// With an external runtime, an interval in which the task has no child process (not started yet here) sends no
    /// sample; the proplet's own process stood in for it. The first sample is the child's (one thread: sleep).
    /// </summary>
    [Fact]
    public async Task GivenAnExternalTaskWithoutItsProcessYet_WhenSampled_ThenNoSampleIsSentUntilTheChildIsThere()
    {
        var ct = TestContext.Current.CancellationToken;
        var settings = TestSettings.Create("me");
        var published = new InMemoryPublisher();
        var clock = new FakeClock();
        var monitor = new TaskMonitor(settings, published, clock, NullLogger<TaskMonitor>.Instance, childProcesses: true);
        var profile = new
        {
            enabled = true,
            interval = 1,
            collect_cpu = true,
            collect_memory = true,
            collect_disk_io = false,
            collect_threads = true,
            collect_file_descriptors = false,
            export_to_mqtt = true,
            retain_history = false,
            history_size = 1,
        };
        var parse = StartRequestParser.Parse(
            JsonSerializer.SerializeToUtf8Bytes(new { id = "child", name = "main", file = Modules.AdditionBase64, monitoring_profile = profile }),
            settings.EntityId,
            TaskLimits.Defaults(settings));
        using var task = new RunningTask(parse.Request.ShouldNotBeNull(parse.Error));
        using var ended = new CancellationTokenSource();
        var monitoring = monitor.MonitorAsync(task, ended.Token);

        await clock.TimersCreatedAsync(1).WaitAsync(TimeSpan.FromSeconds(30), ct);
        clock.Advance(TimeSpan.FromMilliseconds(100));
        await clock.TimersCreatedAsync(2).WaitAsync(TimeSpan.FromSeconds(30), ct);
        clock.Advance(TimeSpan.FromSeconds(1)); // no child: no sample
        await clock.TimersCreatedAsync(3).WaitAsync(TimeSpan.FromSeconds(30), ct);

        using var sleep = Process.Start(new ProcessStartInfo("sleep", "60") { UseShellExecute = false }).ShouldNotBeNull();
        try
        {
            task.Attach(sleep);
            clock.Advance(TimeSpan.FromSeconds(1));
            var sample = await published.NextAsync(Topics.TaskMetrics, ct);

            sample.GetProperty("metrics").GetProperty("thread_count").GetUInt32().ShouldBe(1u, sample.GetRawText());
        }
        finally
        {
            sleep.Kill();
            await ended.CancelAsync();
            await monitoring;
        }
    }
}
