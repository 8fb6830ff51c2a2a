using Propeller.Bench.EndToEnd;

namespace Propeller.Bench;

internal static partial class BenchmarkRegistry
{
    static partial void AddEndToEnd(IDictionary<string, Func<string[], CancellationToken, Task<int>>> benchmarks) =>
        benchmarks["e2e"] = EndToEndBenchmark.RunAsync;
}
