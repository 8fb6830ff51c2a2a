namespace Propeller.Bench;

internal static partial class BenchmarkRegistry
{
    static partial void AddWasi(IDictionary<string, Func<string[], CancellationToken, Task<int>>> benchmarks) =>
        benchmarks["wasi"] = WasiBenchmark.RunAsync;
}
