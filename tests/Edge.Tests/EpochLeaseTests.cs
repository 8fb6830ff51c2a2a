using Microsoft.Extensions.Logging.Abstractions;
using Propeller.Contracts.Mqtt;
using Propeller.Edge.Execution;
using Propeller.Edge.Tasks;
using Propeller.Plugins.Hosting;
using Propeller.Plugins.Proplet;
using Propeller.Tests.Shared;
using Propeller.WasmHost;

namespace Propeller.Edge.Tests;

/// <summary>
/// Tests that count what engines hold process-wide (the shared engine's leases, ticker threads): alone in the process,
/// so the counts are theirs.
/// </summary>
[CollectionDefinition("wasm engines alone", DisableParallelization = true)]
public sealed class WasmEnginesAlone;

/// <summary>
/// Every way the proplet runs guest code gives its epoch lease back when the guest is done, whichever way it ended
/// (ADR 0007): a lease left behind would keep the ticker waking an idle proplet 100 times a second.
/// </summary>
[Collection("wasm engines alone")]
public sealed class EpochLeaseTests : IDisposable
{
    private readonly InProcessRuntime _runtime = new(TestSettings.Create(), NullLogger<InProcessRuntime>.Instance);
    private readonly DirectoryInfo _plugins = Directory.CreateTempSubdirectory("lease-plugins");

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public void Dispose()
    {
        _runtime.Dispose();
        _plugins.Delete(recursive: true);
    }

    [Fact]
    public async Task GivenTasksOfEveryKind_WhenEachHasEnded_ThenNoLeaseIsLeft()
    {
        await NoLeaseAsync(); // guests of tests that ran before (a stopped guest's host call) finish first

        (await RunAsync(Modules.Addition, "main", ["40", "2"])).ShouldBe(TaskOutcome.Success("42"));
        await NoLeaseAsync();
        (await RunAsync(CPrograms.Get("basics"), "_start", ["0"])).Error.ShouldBeNull();
        await NoLeaseAsync();
        (await RunAsync(Modules.Spin, "main", [], new TaskLimits(1_000_000, null, null))).Error.ShouldNotBeNull().ShouldContain("fuel");
        await NoLeaseAsync();
        (await RunAsync(Components.Calculator, "add", ["40", "2"])).ShouldBe(TaskOutcome.Success("42"));
        await NoLeaseAsync();
        (await RunAsync(Components.Calculator, "trap", [])).Error.ShouldNotBeNull().ShouldContain("unreachable");
        await NoLeaseAsync();
        (await RunAsync(Components.Command(stdout: "hi"), "_start", [])).Error.ShouldBeNull();
        await NoLeaseAsync();

        using var stopped = NewTask("main", [], new TaskLimits(null, null, null));
        var spinning = _runtime.RunAsync(stopped, Modules.Spin, Ct);
        await LeasedAsync(spinning);
        WasmEngine.Shared.Leases.ShouldBe(1); // the running guest holds one
        stopped.Abort(StopReason.Stopped);
        (await spinning.WaitAsync(TimeSpan.FromSeconds(30), Ct)).Error.ShouldNotBeNull();
        await NoLeaseAsync();
    }

    [Fact]
    public async Task GivenCoreAndComponentPlugins_WhenCalled_ThenNoLeaseIsLeft_AndAPooledInstanceHoldsNoneBetweenCalls()
    {
        await NoLeaseAsync();
        await File.WriteAllBytesAsync(Path.Combine(_plugins.FullName, "10-core.wasm"), Wat.ToWasm("""
            (module
              (memory (export "memory") 1)
              (data (i32.const 1024) "{\"allow\":true}")
              (func (export "plugin_alloc") (param i32) (result i32) (i32.const 4096))
              (func (export "plugin_free") (param i32 i32))
              (func (export "authorize") (param i32 i32) (result i64) (i64.const 4398046511118)))
            """), Ct); // 1024 << 32 | 14
        await File.WriteAllBytesAsync(Path.Combine(_plugins.FullName, "20-component.wasm"), Components.Plugin(), Ct);
        using var plugins = PropletPluginChain.Load(_plugins.FullName, NullLogger.Instance);
        var info = new PropletTaskInfo { Id = "t", Name = "main" };

        for (var i = 0; i < 3; i++)
        {
            (await plugins.AuthorizeAsync(info, Ct)).ShouldBe((true, null));
            await NoLeaseAsync();
        }
    }

    /// <summary>
    /// A guest asleep in WASI <c>poll_oneoff</c> for ever (2^64 - 1 ns on the monotonic clock) whose task times out is
    /// woken and ended: its lease (and with it its store and instance slot) is given back at once, not when the sleep is
    /// due. Wasmtime's own <c>poll_oneoff</c>, where no epoch check runs, held them for as long as the guest slept.
    /// </summary>
    [Fact]
    public async Task GivenAGuestAsleepInPollOneoffForEver_WhenItsTaskTimesOut_ThenTheGuestEnds_AndItsLeaseIsGivenBack()
    {
        await NoLeaseAsync();
        using var task = NewTask("main", [], new TaskLimits(null, null, TimeSpan.FromMilliseconds(200)));
        var running = _runtime.RunAsync(task, SleepForEver, Ct);
        await AbortAsleepAsync(task, StopReason.TimedOut);

        var outcome = await running.WaitAsync(TimeSpan.FromSeconds(30), Ct);

        outcome.Error.ShouldBe($"Task {task.Id} exceeded its time limit of 0.2 s and was stopped");
        await NoLeaseAsync(TimeSpan.FromSeconds(5));
    }

    /// <summary>The same sleeper stopped by the manager: the stop is reported and the guest's lease is given back.</summary>
    [Fact]
    public async Task GivenAGuestAsleepInPollOneoffForEver_WhenItsTaskIsStopped_ThenTheGuestEnds_AndItsLeaseIsGivenBack()
    {
        await NoLeaseAsync();
        using var task = NewTask("main", [], new TaskLimits(null, null, null));
        var running = _runtime.RunAsync(task, SleepForEver, Ct);
        await AbortAsleepAsync(task, StopReason.Stopped);

        (await running.WaitAsync(TimeSpan.FromSeconds(30), Ct)).Error.ShouldBe($"Task {task.Id} was stopped before completion");
        await NoLeaseAsync(TimeSpan.FromSeconds(5));
    }

    /// <summary>A short sleep in the proplet's own <c>poll_oneoff</c> is still a sleep: it returns success (errno 0).</summary>
    [Fact]
    public async Task GivenAGuestSleepingOneMillisecond_WhenRun_ThenPollOneoffReturnsSuccess()
    {
        var nap = Wat.ToWasm(SleepModule("\\40\\42\\0f\\00\\00\\00\\00\\00")); // 1,000,000 ns

        (await RunAsync(nap, "main", [])).ShouldBe(TaskOutcome.Success("0"));
        await NoLeaseAsync();
    }

    /// <summary>main calls poll_oneoff once with one relative monotonic-clock subscription at 0 (clock id at 16, timeout
    /// at 24, flags 0 at 40), events at 64, the count written at 128, and returns its errno.</summary>
    private static string SleepModule(string timeout) => $$"""
        (module
          (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
          (memory (export "memory") 1)
          (data (i32.const 16) "\01\00\00\00")
          (data (i32.const 24) "{{timeout}}")
          (func (export "main") (result i32) (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128))))
        """;

    private static byte[] SleepForEver => Wat.ToWasm(SleepModule("\\ff\\ff\\ff\\ff\\ff\\ff\\ff\\ff"));

    /// <summary>Ends <paramref name="task"/> (as its timer or a stop would) once its guest is asleep: its store holds the
    /// only lease (the module is compiled, which may take a while on a loaded machine), and the instantiation and the
    /// call into poll_oneoff take microseconds, so they are done 200 ms later.</summary>
    private static async Task AbortAsleepAsync(RunningTask task, StopReason reason)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (WasmEngine.Shared.Leases == 0)
        {
            DateTime.UtcNow.ShouldBeLessThan(deadline, "the guest never started");
            await Task.Delay(10, Ct);
        }

        await Task.Delay(200, Ct);
        task.Abort(reason);
    }

    /// <summary>Waits until a lease is held on the shared engine: the guest of <paramref name="running"/> has started (its
    /// module is compiled first, which may take a while on a loaded machine; within 30 s), and fails at once if the task
    /// ended without taking one.</summary>
    private static async Task LeasedAsync(Task<TaskOutcome> running)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (WasmEngine.Shared.Leases == 0)
        {
            running.IsCompleted.ShouldBeFalse("the task ended before its guest held a lease");
            DateTime.UtcNow.ShouldBeLessThan(deadline, "the guest never started");
            await Task.Delay(10, Ct);
        }
    }

    /// <summary>No lease held on the shared engine (within 30 s: a guest ends at its next tick or when its host call returns).</summary>
    private static async Task NoLeaseAsync(TimeSpan? within = null)
    {
        var deadline = DateTime.UtcNow.Add(within ?? TimeSpan.FromSeconds(30));
        while (WasmEngine.Shared.Leases != 0)
        {
            DateTime.UtcNow.ShouldBeLessThan(deadline, $"{WasmEngine.Shared.Leases} epoch lease(s) still held");
            await Task.Delay(10, Ct);
        }
    }

    private async Task<TaskOutcome> RunAsync(byte[] binary, string name, string[] inputs, TaskLimits? limits = null)
    {
        using var task = NewTask(name, inputs, limits ?? new TaskLimits(null, null, null));
        return await _runtime.RunAsync(task, binary, Ct).WaitAsync(TimeSpan.FromSeconds(60), Ct);
    }

    private static RunningTask NewTask(string name, string[] inputs, TaskLimits limits) => new(new StartRequest(
        new StartMessage { Id = Guid.NewGuid().ToString(), Name = name, Inputs = inputs },
        limits,
        MonitoringProfile.Standard));
}
