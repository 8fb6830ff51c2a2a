using Propeller.Edge.Execution;
using Propeller.Tests.Shared;

namespace Propeller.Edge.Tests;

/// <summary>`propeller-proplet run` (<see cref="RunCommand"/>), called in-process with real WASI programs.</summary>
public sealed class RunCommandTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>A guest asleep in poll_oneoff runs no guest code, where the epoch check runs: the run's own poll_oneoff
    /// wakes it at the --timeout, as the proplet's tasks are (the 60 s sleep would outlast the 30 s wait).</summary>
    [Fact]
    public async Task GivenAGuestAsleepInPollOneoff_WhenTheTimeoutPasses_ThenRunExitsWithTheTimeoutsCode()
    {
        var (code, stdout, stderr) = await RunAsync(["--timeout", "1", CPrograms.PathOf("sleep"), "60"]);

        (code, stdout, stderr).ShouldBe((124, "", "error: --timeout of 1 s exceeded\n"));
    }

    /// <summary>A --dir whose host directory cannot be opened is bad input: one error line and exit 2, not an unhandled
    /// exception (the process aborted with 134, the trap's code).</summary>
    [Fact]
    public async Task GivenADirThatDoesNotExist_WhenRun_ThenItExitsWithTheBadInputCodeAndOneErrorLine()
    {
        var missing = Path.Combine(Path.GetTempPath(), "no-such-dir-" + Guid.NewGuid().ToString("N"));

        var (code, stdout, stderr) = await RunAsync(["--dir", missing + "::/data", CPrograms.PathOf("sleep"), "0"]);

        (code, stdout).ShouldBe((2, ""));
        stderr.ShouldStartWith("error: --dir: ");
        stderr.ShouldContain(missing);
        stderr.TrimEnd('\n').ShouldNotContain('\n');
    }

    /// <summary>A guest out of fuel: the trap's code and its name once (it said "wasm trap: all fuel consumed: wasm trap:
    /// all fuel consumed").</summary>
    [Fact]
    public async Task GivenAGuestThatLoops_WhenItsFuelRunsOut_ThenRunExitsWithTheTrapsCodeAndNamesItOnce()
    {
        var module = Path.Combine(Path.GetTempPath(), "loop-" + Guid.NewGuid().ToString("N") + ".wasm");
        await File.WriteAllBytesAsync(module, Wat.ToWasm("""(module (func (export "_start") (loop $l (br $l))))"""), Ct);
        try
        {
            var (code, stdout, stderr) = await RunAsync(["--fuel", "1000", module]);

            (code, stdout, stderr).ShouldBe((134, "", "error: wasm trap: all fuel consumed\n"));
        }
        finally
        {
            File.Delete(module);
        }
    }

    /// <summary>--invoke on a reactor: its _initialize runs first (as wasmtime run does; it was not called, and the export
    /// ran uninitialized), floats print as Rust's Display (they were "1E+20" and "Infinity") and are read in Rust's syntax
    /// ("1,000" was taken).</summary>
    [Fact]
    public async Task GivenAReactor_WhenAnExportIsInvoked_ThenItIsInitializedFirstAndFloatsReadAndPrintAsWasmtimes()
    {
        var module = Path.Combine(Path.GetTempPath(), "reactor-" + Guid.NewGuid().ToString("N") + ".wasm");
        await File.WriteAllBytesAsync(module, Wat.ToWasm("""
            (module
              (global $ready (mut i32) (i32.const 0))
              (func (export "_initialize") (global.set $ready (i32.const 1)))
              (func (export "ready") (result i32) (global.get $ready))
              (func (export "times") (param f64 f64) (result f64) (f64.mul (local.get 0) (local.get 1))))
            """), Ct);
        try
        {
            (await RunAsync(["--invoke", "ready", module])).ShouldBe((0, "1\n", ""));
            (await RunAsync(["--invoke", "times", module, "1e10", "1e10"])).ShouldBe((0, "100000000000000000000\n", ""));
            (await RunAsync(["--invoke", "times", module, "inf", "2"])).ShouldBe((0, "inf\n", ""));
            (await RunAsync(["--invoke", "times", module, "1,000", "2"])).Code.ShouldNotBe(0);
        }
        finally
        {
            File.Delete(module);
        }
    }

    /// <summary>A file that is no WebAssembly, or a directory, is one plain line (it was Wasmtime's "magic header not
    /// detected: bad magic number - expected=[: 0x0,..." and "Access to the path … is denied").</summary>
    [Fact]
    public async Task GivenATextFileOrADirectory_WhenRun_ThenOneLineSaysWhatItIs()
    {
        var text = Path.Combine(Path.GetTempPath(), "text-" + Guid.NewGuid().ToString("N") + ".wasm");
        await File.WriteAllTextAsync(text, "hello", Ct);
        try
        {
            (await RunAsync([text])).ShouldBe((1, "", $"error: {text}: not a WebAssembly binary: it starts with 68 65 6c 6c 6f, not 00 61 73 6d (\\0asm)\n"));
            (await RunAsync([Path.GetTempPath()])).ShouldBe((1, "", $"error: {Path.GetTempPath()} is a directory, not a WebAssembly file\n"));
        }
        finally
        {
            File.Delete(text);
        }
    }

    private static async Task<(int Code, string Stdout, string Stderr)> RunAsync(string[] args)
    {
        using var stdout = new StringWriter();
        using var stderr = new StringWriter();
        var code = await Task.Run(() => RunCommand.Run("propeller-proplet run", args, stdout, stderr), Ct).WaitAsync(TimeSpan.FromSeconds(30), Ct);
        return (code, stdout.ToString(), stderr.ToString());
    }
}
