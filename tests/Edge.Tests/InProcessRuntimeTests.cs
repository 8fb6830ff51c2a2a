using Microsoft.Extensions.Logging.Abstractions;
using Propeller.Contracts.Mqtt;
using Propeller.Edge.Execution;
using Propeller.Edge.Tasks;

namespace Propeller.Edge.Tests;

public sealed class InProcessRuntimeTests : IDisposable
{
    private readonly InProcessRuntime _runtime = new(TestSettings.Create(), NullLogger<InProcessRuntime>.Instance);

    public void Dispose() => _runtime.Dispose();

    [Fact]
    public async Task GivenTheAdditionModule_WhenMainIsCalledWith10And32_ThenTheResultIs42()
    {
        var outcome = await RunAsync(Modules.Addition, "main", ["10", "32"]);

        outcome.ShouldBe(TaskOutcome.Success("42"));
    }

    [Fact]
    public async Task GivenAnUnknownName_WhenRun_ThenMainIsTheFallback()
    {
        (await RunAsync(Modules.Addition, "add", ["1", "2"])).ShouldBe(TaskOutcome.Success("3"));
    }

    [Fact]
    public async Task GivenAModuleWithoutTheNameOrFallbacks_WhenRun_ThenTheErrorListsTheExports()
    {
        var outcome = await RunAsync(Modules.Numbers, "add", []);

        outcome.Error.ShouldBe(
            "Function 'add' not found, and fallbacks [\"main\", \"run\", \"_start\"] also not found in module exports. "
            + "Available function exports: [\"half\", \"neg64\", \"third\", \"nothing\"]");
    }

    [Theory]
    [InlineData("half", "5", "2.5")]
    [InlineData("half", "inf", "inf")]
    [InlineData("neg64", "9223372036854775807", "-9223372036854775807")]
    [InlineData("third", "1", "0.33333334")]
    [InlineData("nothing", null, "")]
    public async Task GivenTypedParameters_WhenRun_ThenInputsAreParsedByTypeAndTheFirstResultFormatted(string name, string? input, string expected)
    {
        (await RunAsync(Modules.Numbers, name, input is null ? [] : [input])).ShouldBe(TaskOutcome.Success(expected));
    }

    [Fact]
    public async Task GivenBadInputs_WhenRun_ThenTheErrorsAreTheOriginals()
    {
        (await RunAsync(Modules.Addition, "main", ["1"])).Error.ShouldBe("Argument count mismatch for function 'main': expected 2 arguments but got 1");
        (await RunAsync(Modules.Addition, "main", ["1", "2.5"])).Error.ShouldBe("Failed to parse '2.5' as i32: invalid digit found in string");
    }

    [Fact]
    public async Task GivenAWasiProgram_WhenRun_ThenItsStdoutIsTheResult()
    {
        (await RunAsync(Modules.Hello, "_start", [])).ShouldBe(TaskOutcome.Success("hello from wasi\n"));
    }

    [Fact]
    public async Task GivenAWasiProgramExitingWith3_WhenRun_ThenItFailsWithTheStatus()
    {
        (await RunAsync(Modules.ExitThree, "_start", [])).Error.ShouldBe("Exited with i32 exit status 3");
    }

    [Fact]
    public async Task GivenATrap_WhenRun_ThenTheErrorCarriesTheTrapMessage()
    {
        var outcome = await RunAsync(Modules.Trap, "main", []);

        outcome.Error.ShouldNotBeNull().ShouldStartWith("Failed to call function 'main': wasm trap: unreachable");
    }

    /// <summary>A binary that is no WebAssembly at all is said plainly (it was Wasmtime's "unexpected end-of-file (at
    /// offset 0x0)" or "magic header not detected: bad magic number - expected=[: 0x0,: 0x61,...").</summary>
    [Theory]
    [InlineData(new byte[] { 1, 2, 3, 4 }, "it starts with 01 02 03 04, not 00 61 73 6d (\\0asm)")]
    [InlineData(new byte[] { 0x68, 0x69, 0x0a }, "it starts with 68 69 0a, not 00 61 73 6d (\\0asm)")]
    [InlineData(new byte[] { 0x3c, 0x68, 0x74, 0x6d, 0x6c, 0x3e, 0x0a, 0x3c, 0x62 }, "it starts with 3c 68 74 6d 6c 3e 0a 3c, not 00 61 73 6d (\\0asm)")]
    [InlineData(new byte[0], "it is empty")]
    public async Task GivenNotWasm_WhenRun_ThenCompilationFailsSayingSo(byte[] binary, string reason)
    {
        (await RunAsync(binary, "main", [])).Error.ShouldBe($"Failed to compile wasm module from binary: not a WebAssembly binary: {reason}");
    }

    [Fact]
    public async Task GivenAFuelLimit_WhenAnEndlessLoopRuns_ThenItRunsOutOfFuel()
    {
        var outcome = await RunAsync(Modules.Spin, "main", [], new TaskLimits(100_000, null, null));

        outcome.Error.ShouldNotBeNull().ShouldContain("all fuel consumed");
    }

    [Fact]
    public async Task GivenAMemoryLimit_WhenTheGuestGrowsPastIt_ThenTheGrowFails()
    {
        (await RunAsync(Modules.Grow, "main", [], new TaskLimits(null, 2, null))).ShouldBe(TaskOutcome.Success("-1"));
        (await RunAsync(Modules.Grow, "main", [])).ShouldBe(TaskOutcome.Success("1"));
    }

    [Fact]
    public async Task GivenAnEndlessLoop_WhenTheTaskIsStopped_ThenTheGuestIsInterruptedAndReportedStopped()
    {
        using var task = NewTask("main", [], null);
        var running = _runtime.RunAsync(task, Modules.Spin, TestContext.Current.CancellationToken);
        task.Abort(StopReason.Stopped);

        var outcome = await running.WaitAsync(TimeSpan.FromSeconds(30), TestContext.Current.CancellationToken);

        outcome.Error.ShouldBe($"Task {task.Id} was stopped before completion");
    }

    /// <summary>
    /// A PROPLET_DIRS entry that <see cref="Directory.Exists"/> sees (it shortens <c>missing/..</c> away) but Wasmtime
    /// cannot open (the system walks through the missing directory) is skipped (spec §2.4), not a failure of the task
    /// with "internal proplet error"; the other entries are still preopened.
    /// </summary>
    [Fact]
    public async Task GivenAPreopenThatSeemsToExistButCannotBeOpened_WhenATaskRuns_ThenItRunsWithoutIt()
    {
        var root = Directory.CreateTempSubdirectory("proplet-preopen-");
        try
        {
            var unopenable = Path.Combine(root.FullName, "missing") + "/..";
            Directory.Exists(unopenable).ShouldBeTrue();
            var settings = TestSettings.Create() with { Dirs = [unopenable, root.FullName] };
            using var runtime = new InProcessRuntime(settings, NullLogger<InProcessRuntime>.Instance);
            using var task = NewTask("main", ["10", "32"], null);

            var outcome = await runtime.RunAsync(task, Modules.Addition, TestContext.Current.CancellationToken);

            outcome.ShouldBe(TaskOutcome.Success("42"));
        }
        finally
        {
            root.Delete(recursive: true);
        }
    }

    private Task<TaskOutcome> RunAsync(byte[] binary, string name, string[] inputs, TaskLimits? limits = null)
    {
        var task = NewTask(name, inputs, limits);
        return RunAndDisposeAsync(task, binary);
    }

    private async Task<TaskOutcome> RunAndDisposeAsync(RunningTask task, byte[] binary)
    {
        using (task)
        {
            return await _runtime.RunAsync(task, binary, TestContext.Current.CancellationToken);
        }
    }

    private static RunningTask NewTask(string name, string[] inputs, TaskLimits? limits) => new(new StartRequest(
        new StartMessage { Id = Guid.NewGuid().ToString(), Name = name, Inputs = inputs },
        limits ?? new TaskLimits(null, null, null),
        MonitoringProfile.Standard));
}
