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

    /// <summary>One interval whose publish fails does not end the task's metrics (a daemon lost them for good): the
    /// next interval publishes again.</summary>
    [Fact]
    public async Task GivenAPublishThatFailsOnce_WhenTheNextIntervalComes_ThenItsSampleIsPublished()
    {
        var ct = TestContext.Current.CancellationToken;
        var settings = TestSettings.Create("me");
        var published = new FailingOncePublisher();
        var clock = new FakeClock();
        var monitor = new TaskMonitor(settings, published, clock, NullLogger<TaskMonitor>.Instance);
        var parse = StartRequestParser.Parse(
            JsonSerializer.SerializeToUtf8Bytes(new { id = "t", name = "main", file = Modules.AdditionBase64, monitoring_profile = Profile(historySize: 10) }),
            settings.EntityId,
            TaskLimits.Defaults(settings));
        using var task = new RunningTask(parse.Request.ShouldNotBeNull(parse.Error));
        using var ended = new CancellationTokenSource();
        var monitoring = monitor.MonitorAsync(task, ended.Token);
        try
        {
            await clock.TimersCreatedAsync(1).WaitAsync(TimeSpan.FromSeconds(30), ct);
            clock.Advance(TimeSpan.FromMilliseconds(100));
            await clock.TimersCreatedAsync(2).WaitAsync(TimeSpan.FromSeconds(30), ct);
            clock.Advance(TimeSpan.FromSeconds(1)); // this publish throws
            await clock.TimersCreatedAsync(3).WaitAsync(TimeSpan.FromSeconds(30), ct);
            clock.Advance(TimeSpan.FromSeconds(1));

            var sample = await published.Inner.NextAsync(Topics.TaskMetrics, ct);
            sample.GetProperty("task_id").GetString().ShouldBe("t");
            published.Failures.ShouldBe(1);
        }
        finally
        {
            await ended.CancelAsync();
            await monitoring;
        }
    }

    /// <summary>The ring's running aggregates equal the aggregates of its last history_size samples computed afresh,
    /// through many turns of the ring.</summary>
    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    [InlineData(50)]
    public void GivenManySamples_WhenAggregated_ThenTheResultIsThatOfTheLastHistorySizeOnes(int capacity)
    {
        var random = new Random(capacity);
        var history = new SampleHistory(capacity);
        var all = new List<ProcessMetrics>();
        ulong read = 0;
        for (var i = 0; i < 500; i++)
        {
            read += (ulong)random.Next(0, 1000);
            var sample = new ProcessMetrics
            {
                CpuPercent = random.NextDouble() * 100,
                MemoryBytes = (ulong)random.Next(1, 1 << 30),
                DiskReadBytes = read,
                DiskWriteBytes = (ulong)i,
            };
            all.Add(sample);
            history.Add(sample);

            var window = all.Skip(Math.Max(0, all.Count - capacity)).ToList();
            var aggregate = history.Aggregate().ShouldNotBeNull();
            aggregate.SampleCount.ShouldBe(window.Count);
            aggregate.MaxCpuUsage.ShouldBe(window.Max(w => w.CpuPercent));
            aggregate.MaxMemoryUsage.ShouldBe(window.Max(w => w.MemoryBytes));
            aggregate.AvgCpuUsage.ShouldBe(window.Average(w => w.CpuPercent), 1e-6);
            ((double)aggregate.AvgMemoryUsage).ShouldBe(window.Average(w => (double)w.MemoryBytes), 2);
            aggregate.TotalDiskRead.ShouldBe(window[^1].DiskReadBytes - window[0].DiskReadBytes);
            aggregate.TotalDiskWrite.ShouldBe(window[^1].DiskWriteBytes - window[0].DiskWriteBytes);
        }
    }

    [Fact]
    public void GivenNoRetainedHistory_WhenAggregated_ThenThereAreNoAggregates()
    {
        var history = new SampleHistory(0);
        history.Add(new ProcessMetrics { CpuPercent = 5 });
        history.Aggregate().ShouldBeNull();
    }

    private static object Profile(int historySize) => new
    {
        enabled = true,
        interval = 1,
        collect_cpu = true,
        collect_memory = true,
        collect_disk_io = false,
        collect_threads = false,
        collect_file_descriptors = false,
        export_to_mqtt = true,
        retain_history = true,
        history_size = historySize,
    };

    private sealed class FailingOncePublisher : Messaging.IPropletPublisher
    {
        public InMemoryPublisher Inner { get; } = new();

        public int Failures { get; private set; }

        public Task PublishAsync(string path, ReadOnlyMemory<byte> payload, CancellationToken cancellationToken)
        {
            if (Failures == 0)
            {
                Failures++;
                throw new InvalidOperationException("broker said no");
            }

            return Inner.PublishAsync(path, payload, cancellationToken);
        }
    }
}
