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
        await Task.Delay(100, Ct);
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

    /// <summary>No lease held on the shared engine (within 30 s: a guest ends at its next tick or when its host call returns).</summary>
    private static async Task NoLeaseAsync()
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
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
