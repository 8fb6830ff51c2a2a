namespace Propeller.Bench;

internal static partial class BenchmarkRegistry
{
    static partial void AddComponents(IDictionary<string, Func<string[], CancellationToken, Task<int>>> benchmarks) =>
        benchmarks["components"] = ComponentBenchmark.RunAsync;
}
