using System.Text;
using Propeller.Wasm.Wasi;

namespace Propeller.Wasm.Tests;

/// <summary>WASI preview1 programs built from C (WasiPrograms/*.c) run under the store limits (issue 5).</summary>
public sealed class WasiTests : IDisposable
{
    private readonly Engine _engine = new(new Config().WithConsumeFuel(true).WithEpochInterruption(true));
    private readonly DirectoryInfo _temp = Directory.CreateTempSubdirectory("wasi-test");

    public void Dispose()
    {
        _engine.Dispose();
        _temp.Delete(true);
    }

    [Fact]
    public void GivenArgsAndEnvironment_WhenTheProgramRuns_ThenItSeesThemAndItsExitCodeIsReturned()
    {
        var run = Run("basics", c => c.WithArgs("basics", "7", "two words").WithEnvironmentVariable("GREETING", "hello"));
        run.ExitCode.ShouldBe(7);
        run.Stdout.ShouldBe("arg0=basics\narg1=7\narg2=two words\nGREETING=hello\n");
        Run("basics", c => c.WithArgs("basics")).Stdout.ShouldContain("GREETING=(unset)");
    }

    [Fact]
    public void GivenAPreopenedDirectory_WhenTheProgramWorksWithFiles_ThenTheHostSeesTheResult()
    {
        var data = _temp.CreateSubdirectory("data");
        File.WriteAllText(Path.Combine(data.FullName, "input.txt"), "hello wasi\n");
        var run = Run("files", c => c.WithArgs("files").WithPreopenedDirectory(data.FullName, "/data"));
        run.ExitCode.ShouldBe(0, run.Stderr);
        run.Stdout.ShouldBe("size=17\nentry=input.txt\nentry=out\n");
        File.ReadAllText(Path.Combine(data.FullName, "out", "final.txt")).ShouldBe("upper:HELLO WASI\n");
        File.Exists(Path.Combine(data.FullName, "tmp.txt")).ShouldBeFalse();
    }

    [Fact]
    public void GivenClocks_WhenTheProgramSleeps_ThenMonotonicTimeAdvancesAndRealtimeIsTheHostTime()
    {
        var run = Run("clocks", c => c.WithArgs("clocks"));
        run.ExitCode.ShouldBe(0);
        var values = run.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => long.Parse(l.Split('=')[1], System.Globalization.CultureInfo.InvariantCulture)).ToArray();
        values[0].ShouldBeInRange(20, 5_000);
        values[1].ShouldBeInRange(DateTimeOffset.UtcNow.ToUnixTimeSeconds() - 60, DateTimeOffset.UtcNow.ToUnixTimeSeconds() + 1);
    }

    [Fact]
    public void GivenLargeOutput_WhenCapturedIntoABoundedBuffer_ThenTheHostKeepsOnlyTheCapAndTheGuestCompletes()
    {
        var full = Run("bigout", c => c.WithArgs("bigout", "32768"), outputCap: 4 << 20);
        full.ExitCode.ShouldBe(0);
        full.Stdout.Length.ShouldBe(32768 * 68);
        full.Stdout.ShouldEndWith("00032767-abcdefghijklmnopqrstuvwxyz-ABCDEFGHIJKLMNOPQRSTUVWXYZ-0123\n");

        var capped = new WasiOutputBuffer(1000);
        var run = Run("bigout", c => c.WithArgs("bigout", "32768").WithStandardOutput(capped));
        run.ExitCode.ShouldBe(0);
        capped.ToArray().Length.ShouldBe(1000);
        capped.TotalWritten.ShouldBe(32768 * 68);
        capped.Truncated.ShouldBeTrue();
    }

    [Fact]
    public void GivenAnInfiniteLoop_WhenFuelRunsOut_ThenItTrapsAndTheEngineRunsTheNextProgram()
    {
        var run = Run("spin", c => c.WithArgs("spin"), fuel: 5_000_000);
        run.Trap.ShouldNotBeNull().Code.ShouldBe(TrapCode.OutOfFuel);
        Run("basics", c => c.WithArgs("basics", "3")).ExitCode.ShouldBe(3);
    }

    [Fact]
    public void GivenAnInfiniteLoop_WhenTheTimeoutFires_ThenItIsInterrupted()
    {
        var started = DateTime.UtcNow;
        var run = Run("spin", c => c.WithArgs("spin"), timeout: TimeSpan.FromMilliseconds(300));
        run.Trap.ShouldNotBeNull().Code.ShouldBe(TrapCode.Interrupt);
        (DateTime.UtcNow - started).ShouldBeLessThan(TimeSpan.FromSeconds(20));
    }

    [Fact]
    public void GivenAGuestSleepingInPollOneoff_WhenTheTimeoutFires_ThenTheSleepIsInterruptedToo()
    {
        var started = DateTime.UtcNow;
        var run = Run("sleep", c => c.WithArgs("sleep"), timeout: TimeSpan.FromMilliseconds(300));
        run.Trap.ShouldNotBeNull().Code.ShouldBe(TrapCode.Interrupt);
        run.Stdout.ShouldBeEmpty();
        (DateTime.UtcNow - started).ShouldBeLessThan(TimeSpan.FromSeconds(10));
    }

    [Fact]
    public void GivenAMemoryCap_WhenTheProgramAllocatesWithoutEnd_ThenMallocFailsAtTheCap()
    {
        Memory? memory = null;
        var run = Run("membomb", c => c.WithArgs("membomb"), limits: new StoreLimits { MemorySize = 16 << 20 }, inspect: i => memory = i.GetMemory("memory"));
        run.ExitCode.ShouldBe(12);
        run.Stdout.ShouldStartWith("allocated ");
        memory!.Length.ShouldBeLessThanOrEqualTo(16 << 20);

        var strict = Run("membomb", c => c.WithArgs("membomb"), limits: new StoreLimits { MemorySize = 16 << 20, TrapOnGrowFailure = true });
        strict.Trap.ShouldNotBeNull().Code.ShouldBe(TrapCode.ResourceLimitExceeded);
    }

    [Fact]
    public void GivenRunawayRecursion_WhenTheDepthLimitIsReached_ThenItTrapsWithStackOverflow()
    {
        var run = Run("recurse", c => c.WithArgs("recurse"), maxDepth: 2_000);
        run.Trap.ShouldNotBeNull().Code.ShouldBe(TrapCode.StackOverflow);
        Run("basics", c => c.WithArgs("basics", "5")).ExitCode.ShouldBe(5);
    }

    [Fact]
    public void GivenAPreopen_WhenTheProgramTriesToEscapeIt_ThenEveryAttemptIsRefused()
    {
        var outside = _temp.CreateSubdirectory("outside");
        var secret = Path.Combine(outside.FullName, "secret.txt");
        File.WriteAllText(secret, "TOP SECRET");
        var sandbox = outside.CreateSubdirectory("sandbox");
        sandbox.CreateSubdirectory("sub");
        File.WriteAllText(Path.Combine(sandbox.FullName, "inside.txt"), "inside");
        File.CreateSymbolicLink(Path.Combine(sandbox.FullName, "link-out"), "../secret.txt");
        File.CreateSymbolicLink(Path.Combine(sandbox.FullName, "link-abs"), secret);
        File.CreateSymbolicLink(Path.Combine(sandbox.FullName, "sub", "link-up"), "../../secret.txt");
        File.CreateSymbolicLink(Path.Combine(sandbox.FullName, "link-in"), "sub/../inside.txt");

        var run = Run("escape", c => c.WithArgs("escape").WithPreopenedDirectory(sandbox.FullName, "/sandbox"));
        run.ExitCode.ShouldBe(0, run.Stderr);
        run.Stdout.Contains("TOP SECRET", StringComparison.Ordinal).ShouldBeFalse();
        run.Stdout.ShouldContain("OPEN /sandbox/sub/../inside.txt: inside");
        run.Stdout.ShouldContain("OPEN /sandbox/link-in: inside");
        foreach (var path in new[] { "/sandbox/../secret.txt", "/sandbox/sub/../../secret.txt", "/etc/passwd", "/sandbox/link-out", "/sandbox/link-abs", "/sandbox/sub/link-up" })
        {
            run.Stdout.ShouldContain($"REFUSED {path}:");
        }

        run.Stdout.ShouldNotContain("/sandbox/made-abs");
    }

    [Fact]
    public async Task GivenTwoContexts_WhenTheyRunConcurrently_ThenEachSeesOnlyItsOwnArgsEnvironmentAndOutput()
    {
        var runs = await Task.WhenAll(Enumerable.Range(0, 4).Select(i => Task.Run(
            () => Run("basics", c => c.WithArgs("basics", i.ToString(System.Globalization.CultureInfo.InvariantCulture)).WithEnvironmentVariable("GREETING", $"g{i}")),
            TestContext.Current.CancellationToken)));
        for (var i = 0; i < runs.Length; i++)
        {
            runs[i].ExitCode.ShouldBe(i);
            runs[i].Stdout.ShouldBe($"arg0=basics\narg1={i}\nGREETING=g{i}\n");
        }
    }

    [Fact]
    public void GivenAModuleUsingEveryWasiImport_WhenItIsLinked_ThenAll46FunctionsAreDefined()
    {
        var linker = new Linker(_engine);
        new WasiContext(new WasiConfiguration()).DefineIn(linker);
        foreach (var name in new[] { "args_get", "fd_write", "path_open", "poll_oneoff", "proc_exit", "sock_shutdown", "fd_readdir", "path_link" })
        {
            linker.Get(WasiContext.ModuleName, name).ShouldBeOfType<Function>();
        }
    }

    private sealed record Result(int ExitCode, string Stdout, string Stderr, TrapException? Trap);

    private Result Run(
        string program,
        Action<WasiConfiguration> configure,
        int outputCap = 1 << 20,
        long fuel = long.MaxValue / 2,
        TimeSpan? timeout = null,
        StoreLimits? limits = null,
        int? maxDepth = null,
        Action<Instance>? inspect = null)
    {
        var stdout = new WasiOutputBuffer(outputCap);
        var stderr = new WasiOutputBuffer(1 << 16);
        var config = new WasiConfiguration().WithStandardOutput(stdout).WithStandardError(stderr);
        configure(config);
        using var store = new Store(_engine);
        store.SetFuel(fuel);
        store.SetLimits(limits);
        if (maxDepth is { } depth)
        {
            store.SetMaxCallDepth(depth);
        }

        var context = new WasiContext(config);
        var linker = new Linker(_engine);
        context.DefineIn(linker);
        var instance = linker.Instantiate(store, Module.FromBytes(_engine, program, CPrograms.Get(program)));
        using var timer = timeout is { } t ? new Timer(_ => store.Interrupt(), null, t, Timeout.InfiniteTimeSpan) : null;
        try
        {
            var code = context.RunStart(instance);
            inspect?.Invoke(instance);
            return new Result(code, Encoding.UTF8.GetString(stdout.ToArray()), stderr.ToString(), null);
        }
        catch (TrapException trap)
        {
            return new Result(-1, stdout.ToString(), stderr.ToString(), trap);
        }
    }
}
