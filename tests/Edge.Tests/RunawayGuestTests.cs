using System.Globalization;
using Microsoft.Extensions.Logging.Abstractions;
using Propeller.Contracts.Mqtt;
using Propeller.Edge.Configuration;
using Propeller.Edge.Execution;
using Propeller.Edge.Tasks;
using Propeller.Tests.Shared;

namespace Propeller.Edge.Tests;

/// <summary>
/// Guests that misbehave on Wasmtime: each is ended by its limit with an error naming the limit, and the runtime runs
/// the next task as before (issue 12). Also stops, malformed binaries and isolation between concurrent tasks.
/// </summary>
public sealed class RunawayGuestTests : IDisposable
{
    private readonly DirectoryInfo _temp = Directory.CreateTempSubdirectory("runaway");
    private readonly InProcessRuntime _runtime = new(TestSettings.Create(), NullLogger<InProcessRuntime>.Instance);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public void Dispose()
    {
        _runtime.Dispose();
        _temp.Delete(true);
    }

    [Fact]
    public async Task GivenAnInfiniteLoop_WhenTheFuelLimitIsReached_ThenTheErrorNamesTheFuelLimit_AndTheNextTaskRuns()
    {
        var outcome = await RunAsync(_runtime, CPrograms.Get("spin"), "_start", [], new TaskLimits(1_000_000, null, null));

        outcome.Error.ShouldBe("Failed to call function '_start': wasm trap: all fuel consumed (fuel limit 1000000)");
        await ShouldStillWorkAsync();
    }

    [Fact]
    public async Task GivenAnInfiniteLoop_WhenTheTimeLimitPasses_ThenTheErrorNamesTheTimeLimit()
    {
        using var task = NewTask("main", [], new TaskLimits(null, null, TimeSpan.FromMilliseconds(200)));
        using var timer = new Timer(_ => task.Abort(StopReason.TimedOut), null, TimeSpan.FromMilliseconds(200), Timeout.InfiniteTimeSpan);

        var outcome = await _runtime.RunAsync(task, Modules.Spin, Ct).WaitAsync(TimeSpan.FromSeconds(30), Ct);

        outcome.Error.ShouldBe($"Task {task.Id} exceeded its time limit of 0.2 s and was stopped");
        await ShouldStillWorkAsync();
    }

    [Fact]
    public async Task GivenUnboundedMemoryGrowth_WhenTheMemoryLimitIsReached_ThenGrowFailsAndTheErrorNamesTheMemoryLimit()
    {
        // Grows a page at a time until memory.grow answers -1 (Wasmtime's answer at the limit), then traps.
        var grower = Wat.ToWasm("""
            (module (memory (export "memory") 1)
              (func (export "main") (loop $l (br_if $l (i32.ne (memory.grow (i32.const 1)) (i32.const -1)))) unreachable))
            """);

        var outcome = await RunAsync(_runtime, grower, "main", [], new TaskLimits(null, 2, null));

        outcome.Error.ShouldBe("Failed to call function 'main': wasm trap: unreachable (memory limit of 2 MiB reached: 2 MiB in use)");

        // A C program's malloc fails at the limit and the program reports it.
        var bomb = await RunAsync(_runtime, CPrograms.Get("membomb"), "_start", [], new TaskLimits(null, 16, null));
        bomb.Error.ShouldNotBeNull().ShouldStartWith("Exited with i32 exit status 12");
        bomb.Error.ShouldContain("(memory limit of 16 MiB reached: ");
        await ShouldStillWorkAsync();
    }

    /// <summary>
    /// The memory cap is the task's, not each memory's: a module with four memories could grow each to the cap (four
    /// 200-page grows under a 256-page cap all succeeded). Under a cap a task has one linear memory, so it is refused
    /// with an error naming the cap; uncapped, it runs; a component with one memory runs under the cap.
    /// </summary>
    [Fact]
    public async Task GivenAModuleWithFourMemories_WhenItsTaskIsCapped_ThenItIsRefused_SoTheCapIsTheTasksTotal()
    {
        // wat2wasm --enable-multi-memory of (Tests/Shared's Wat cannot pass the flag):
        // (module (memory $a 1) (memory $b 1) (memory $c 1) (memory $d 1)
        //   (func (export "main") (result i32) ;; how many of the four memory.grow calls by 200 pages (12.5 MiB) succeed
        //     (i32.add (i32.add (i32.ne (memory.grow $a (i32.const 200)) (i32.const -1)) (i32.ne (memory.grow $b (i32.const 200)) (i32.const -1)))
        //              (i32.add (i32.ne (memory.grow $c (i32.const 200)) (i32.const -1)) (i32.ne (memory.grow $d (i32.const 200)) (i32.const -1))))))
        var fourMemories = Convert.FromHexString(
            "0061736d010000000105016000017f030201000509040001000100010001070801046d61696e00000a2701250041c8014000417f4741c80140"
            + "01417f476a41c8014002417f4741c8014003417f476a6a0b");

        var capped = await RunAsync(_runtime, fourMemories, "main", [], new TaskLimits(null, 16, null));

        capped.Error.ShouldBe("Failed to instantiate wasm module: resource limit exceeded: memory count too high at 4 "
            + "(memory limit of 16 MiB: a capped task has one linear memory and at most 16 tables)");
        (await RunAsync(_runtime, fourMemories, "main", [], new TaskLimits(null, null, null))).ShouldBe(TaskOutcome.Success("4"));
        (await RunAsync(_runtime, Components.Calculator, "add", ["40", "2"], new TaskLimits(null, 16, null))).ShouldBe(TaskOutcome.Success("42"));
        await ShouldStillWorkAsync();
    }

    [Fact]
    public async Task GivenDeepRecursion_WhenTheWasmStackIsExhausted_ThenItTrapsCleanly_AndTheProcessSurvives()
    {
        // C keeps its frames' arrays on a shadow stack in linear memory (64 KiB below the data): running off its end is
        // an out-of-bounds access. A wasm-only recursion exhausts Wasmtime's 512 KiB wasm stack.
        var outcome = await RunAsync(_runtime, CPrograms.Get("recurse"), "_start", [], new TaskLimits(null, null, null));

        outcome.Error.ShouldBeOneOf(
            "Failed to call function '_start': wasm trap: out of bounds memory access",
            "Failed to call function '_start': wasm trap: call stack exhausted");
        var wat = await RunAsync(_runtime, Wat.ToWasm("""(module (func $f (export "main") (call $f)))"""), "main", [], new TaskLimits(null, null, null));
        wat.Error.ShouldBe("Failed to call function 'main': wasm trap: call stack exhausted");
        await ShouldStillWorkAsync();
    }

    [Fact]
    public async Task GivenInitialMemoryOverTheLimit_WhenInstantiated_ThenItFailsNamingTheMemoryLimit()
    {
        var big = Wat.ToWasm("""(module (memory 100) (func (export "main")))""");

        var outcome = await RunAsync(_runtime, big, "main", [], new TaskLimits(null, 2, null));

        outcome.Error.ShouldNotBeNull().ShouldStartWith("Failed to instantiate wasm module: memory minimum size of 100 pages exceeds memory limits");
        outcome.Error.ShouldEndWith("(memory limit of 2 MiB)");
        await ShouldStillWorkAsync();
    }

    [Fact]
    public async Task GivenAPreopen_WhenTheGuestTriesToEscapeIt_ThenEveryAttemptIsRefused()
    {
        var outside = _temp.CreateSubdirectory("outside");
        var secret = Path.Combine(outside.FullName, "secret.txt");
        await File.WriteAllTextAsync(secret, "TOP SECRET", Ct);
        var sandbox = outside.CreateSubdirectory("sandbox");
        sandbox.CreateSubdirectory("sub");
        await File.WriteAllTextAsync(Path.Combine(sandbox.FullName, "inside.txt"), "inside", Ct);
        File.CreateSymbolicLink(Path.Combine(sandbox.FullName, "link-out"), "../secret.txt");
        File.CreateSymbolicLink(Path.Combine(sandbox.FullName, "link-abs"), secret);
        File.CreateSymbolicLink(Path.Combine(sandbox.FullName, "sub", "link-up"), "../../secret.txt");
        File.CreateSymbolicLink(Path.Combine(sandbox.FullName, "link-in"), "sub/../inside.txt");
        using var runtime = new InProcessRuntime(TestSettings.Create() with { Dirs = [sandbox.FullName] }, NullLogger<InProcessRuntime>.Instance);

        var outcome = await RunAsync(runtime, CPrograms.Get("escape"), "_start", [sandbox.FullName], new TaskLimits(null, null, null));

        outcome.Succeeded.ShouldBeTrue(outcome.Error);
        var stdout = outcome.Results;
        stdout.Contains("TOP SECRET", StringComparison.Ordinal).ShouldBeFalse();
        stdout.ShouldContain("OPEN /sub/../inside.txt: inside");
        stdout.ShouldContain("OPEN /link-in: inside");
        foreach (var path in new[] { "/../secret.txt", "/sub/../../secret.txt", "/etc/passwd", "/link-out", "/link-abs", "/sub/link-up" })
        {
            stdout.ShouldContain($"REFUSED {path}:");
        }

        stdout.ShouldNotContain("OPEN /made-abs");
        stdout.ShouldNotContain("OPEN /made-link");
    }

    [Fact]
    public async Task GivenAWasiCommandInALoop_WhenStopped_ThenTheGuestEnds()
    {
        var (id, outcome) = await StopAfterAsync("spin", TimeSpan.FromMilliseconds(100), TimeSpan.FromSeconds(30));

        outcome.Error.ShouldBe($"Task {id} was stopped before completion");
        await ShouldStillWorkAsync();
    }

    [Fact]
    public async Task GivenAWasiCommandSleepingInAHostCall_WhenStopped_ThenTheStopIsReportedWithoutWaitingForTheSleep()
    {
        // sleep.c sleeps 8 s in poll_oneoff, where no epoch check runs; the result must not wait for it. The proplet's
        // own poll_oneoff wakes at the stop, so the guest ends too (EpochLeaseTests checks its lease is given back).
        var (id, outcome) = await StopAfterAsync("sleep", TimeSpan.FromMilliseconds(200), TimeSpan.FromSeconds(4));

        outcome.Error.ShouldBe($"Task {id} was stopped before completion");
    }

    private async Task<(string Id, TaskOutcome Outcome)> StopAfterAsync(string program, TimeSpan delay, TimeSpan wait)
    {
        using var task = NewTask("_start", [], null);
        var running = _runtime.RunAsync(task, CPrograms.Get(program), Ct);
        await Task.Delay(delay, Ct);
        task.Abort(StopReason.Stopped);
        return (task.Id, await running.WaitAsync(wait, Ct));
    }

    [Fact]
    public async Task GivenAWasiCommandExitingWithZero_WhenRun_ThenItSucceeds_AndACoreModuleCallingProcExitZeroToo()
    {
        var exitZero = Wat.ToWasm("""
            (module (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32))) (memory (export "memory") 1)
              (func (export "main") (result i32) (call $exit (i32.const 0)) (i32.const 5)))
            """);

        (await RunAsync(_runtime, exitZero, "main", [], new TaskLimits(null, null, null))).ShouldBe(TaskOutcome.Success(""));
        (await RunAsync(_runtime, CPrograms.Get("basics"), "_start", ["0"], new TaskLimits(null, null, null))).Succeeded.ShouldBeTrue();
    }

    /// <summary>
    /// proc_exit(0) before the export runs, in <c>_initialize</c> or in the start function, is the program ending
    /// successfully (as under the Wasmtime CLI); the export is not called on the half-initialized instance (main would
    /// return 5), so the result is empty. A non-zero exit there stays a failure.
    /// </summary>
    [Fact]
    public async Task GivenProcExitZeroInInitializeOrTheStartFunction_WhenRun_ThenItSucceeds_WithoutCallingTheExport()
    {
        const string Imports = """(import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32))) (memory (export "memory") 1)""";
        var inInitialize = Wat.ToWasm($$"""
            (module {{Imports}}
              (func (export "_initialize") (call $exit (i32.const 0)))
              (func (export "main") (result i32) (i32.const 5)))
            """);
        var inStart = Wat.ToWasm($$"""
            (module {{Imports}}
              (func $init (call $exit (i32.const 0))) (start $init)
              (func (export "main") (result i32) (i32.const 5)))
            """);
        var failing = Wat.ToWasm($$"""
            (module {{Imports}}
              (func (export "_initialize") (call $exit (i32.const 3)))
              (func (export "main") (result i32) (i32.const 5)))
            """);

        (await RunAsync(_runtime, inInitialize, "main", [], new TaskLimits(null, null, null))).ShouldBe(TaskOutcome.Success(""));
        (await RunAsync(_runtime, inStart, "main", [], new TaskLimits(null, null, null))).ShouldBe(TaskOutcome.Success(""));
        (await RunAsync(_runtime, failing, "main", [], new TaskLimits(null, null, null))).Error
            .ShouldBe("Failed to initialize the module via _initialize: Exited with i32 exit status 3");
    }

    [Fact]
    public async Task GivenOutputBeyondTheLimit_WhenAWasiCommandRuns_ThenTheResultKeepsTheFirstBytes_AndTheGuestCompletes()
    {
        // 1000 lines of 68 bytes against TestSettings' 4096-byte output limit.
        var outcome = await RunAsync(_runtime, CPrograms.Get("bigout"), "_start", ["1000"], new TaskLimits(null, null, null));

        outcome.Succeeded.ShouldBeTrue(outcome.Error);
        outcome.Results.Length.ShouldBe(4096);
        outcome.Results.ShouldStartWith("00000000-abcdefghijklmnopqrstuvwxyz-ABCDEFGHIJKLMNOPQRSTUVWXYZ-0123\n00000001-");
    }

    [Theory]
    [InlineData(0)]
    [InlineData(4)]
    [InlineData(9)]
    [InlineData(30)]
    public async Task GivenATruncatedModule_WhenRun_ThenCompilationFailsWithAClearError(int length)
    {
        var truncated = Modules.Addition[..length];

        var outcome = await RunAsync(_runtime, truncated, "main", ["1", "2"], new TaskLimits(null, null, null));

        outcome.Error.ShouldNotBeNull().ShouldStartWith("Failed to compile wasm module from binary: ");
        outcome.Error.ShouldNotContain("backtrace");
        await ShouldStillWorkAsync();
    }

    [Fact]
    public async Task GivenAnInvalidButWellFormedModule_WhenRun_ThenValidationFailsWithAClearError()
    {
        var invalid = Wat.ToWasmUnchecked("""(module (func (export "main") (result i32) (i64.const 1)))""");

        var outcome = await RunAsync(_runtime, invalid, "main", [], new TaskLimits(null, null, null));

        outcome.Error.ShouldNotBeNull().ShouldStartWith("Failed to compile wasm module from binary: ");
        outcome.Error.ShouldContain("type mismatch");
    }

    [Fact]
    public async Task GivenTwoTasksOfTheSameModuleAtOnce_WhenTheyRun_ThenTheyShareNoState()
    {
        // Each call bumps a global and a memory cell, spins a while, and returns both: 1 and 1 when nothing is shared.
        var counter = Wat.ToWasm("""
            (module (memory 1) (global $g (mut i32) (i32.const 0))
              (func (export "main") (result i32) (local $i i32)
                (global.set $g (i32.add (global.get $g) (i32.const 1)))
                (i32.store (i32.const 0) (i32.add (i32.load (i32.const 0)) (i32.const 1)))
                (local.set $i (i32.const 20000000))
                (loop $l (local.set $i (i32.sub (local.get $i) (i32.const 1))) (br_if $l (local.get $i)))
                (i32.add (i32.mul (global.get $g) (i32.const 10)) (i32.load (i32.const 0)))))
            """);

        var outcomes = await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => RunAsync(_runtime, counter, "main", [], new TaskLimits(null, null, null))));

        outcomes.ShouldAllBe(o => o == TaskOutcome.Success("11"));
        var commands = await Task.WhenAll(Enumerable.Range(0, 4).Select(i =>
            RunAsync(_runtime, CPrograms.Get("basics"), "_start", [i.ToString(CultureInfo.InvariantCulture)], new TaskLimits(null, null, null), new Dictionary<string, string> { ["GREETING"] = $"g{i}" })));
        for (var i = 1; i < commands.Length; i++)
        {
            commands[i].Error.ShouldBe($"Exited with i32 exit status {i}");
        }

        commands[0].ShouldBe(TaskOutcome.Success("arg0=_start\narg1=0\nGREETING=g0\n"));
    }

    private async Task ShouldStillWorkAsync() =>
        (await RunAsync(_runtime, Modules.Addition, "main", ["40", "2"], new TaskLimits(null, null, null))).ShouldBe(TaskOutcome.Success("42"));

    private static async Task<TaskOutcome> RunAsync(
        InProcessRuntime runtime, byte[] binary, string name, string[] inputs, TaskLimits limits, Dictionary<string, string>? env = null)
    {
        using var task = NewTask(name, inputs, limits, env);
        return await runtime.RunAsync(task, binary, Ct).WaitAsync(TimeSpan.FromSeconds(60), Ct);
    }

    private static RunningTask NewTask(string name, string[] inputs, TaskLimits? limits, Dictionary<string, string>? env = null) => new(new StartRequest(
        new StartMessage { Id = Guid.NewGuid().ToString(), Name = name, Inputs = inputs, Env = env },
        limits ?? new TaskLimits(null, null, null),
        MonitoringProfile.Standard));
}
