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
Console.CancelKeyPress += (_, e) =>
{
    e.Cancel = true;
    cts.Cancel();
};
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
    // Ctrl+C: the benchmark's finally blocks have stopped what it started.
    Console.Error.WriteLine($"propeller-bench {args[0]}: interrupted");
    return 130;
}
catch (BenchFailedException e)
{
    // The run could not give a figure; the message says why (no stack trace: the benchmark's code is not at fault).
    Console.Error.WriteLine($"propeller-bench {args[0]}: FAILED: {e.Message}");
    return 1;
}
