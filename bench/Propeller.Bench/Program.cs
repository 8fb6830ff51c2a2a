using System.Runtime.InteropServices;
using Propeller.Bench;
using Propeller.Bench.Support;

// One command per benchmark: `dotnet run -c Release --project bench/Propeller.Bench -- <name> [options]`.
// Each benchmark measures our component and a reference in the same run and prints `<name> case=... ratio=...` lines.
var benchmarks = BenchmarkRegistry.All();
if (args.Length == 0 || !benchmarks.TryGetValue(args[0], out var run))
{
    Console.Error.WriteLine($"usage: propeller-bench <{string.Join('|', benchmarks.Keys)}> [options]");
    return 2;
}

using var cts = new CancellationTokenSource();
var interruptedExit = 130; // 128 + SIGINT; 128 + SIGTERM after a SIGTERM, as a shell reports them
Console.CancelKeyPress += (_, e) =>
{
    e.Cancel = true;
    cts.Cancel();
};
// SIGTERM (a `kill`, a CI job's timeout, a container stop) as Ctrl+C. Without it the runtime exits at once, skipping the
// benchmark's finally blocks, so the proplets and managers it started run on (manager-startup's manager did); or, where
// the benchmark hosts the manager in this process, that host's own handler stops only the manager and the run waits on
// it until a task's 2-minute limit.
using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, context =>
{
    context.Cancel = true;
    interruptedExit = 143;
    cts.Cancel();
});
try
{
    return await run(args[1..], cts.Token);
}
catch (BenchUsageException e)
{
    // Wrong arguments: one line, exit code 2 (as for an unknown benchmark).
    Console.Error.WriteLine($"propeller-bench {args[0]}: {e.Message}");
    return 2;
}
catch (OperationCanceledException) when (cts.IsCancellationRequested)
{
    // Ctrl+C or SIGTERM: the benchmark's finally blocks have stopped what it started.
    Console.Error.WriteLine($"propeller-bench {args[0]}: interrupted");
    return interruptedExit;
}
catch (BenchFailedException e)
{
    // The run could not give a figure; the message says why (no stack trace: the benchmark's code is not at fault).
    Console.Error.WriteLine($"propeller-bench {args[0]}: FAILED: {e.Message}");
    return 1;
}
