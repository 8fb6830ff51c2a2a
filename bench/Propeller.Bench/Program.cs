using Propeller.Bench;

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
return await run(args[1..], cts.Token);
