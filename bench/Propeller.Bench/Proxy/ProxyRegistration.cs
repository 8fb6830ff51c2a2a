using Propeller.Bench.Proxy;

namespace Propeller.Bench;

internal static partial class BenchmarkRegistry
{
    static partial void AddProxy(IDictionary<string, Func<string[], CancellationToken, Task<int>>> benchmarks) =>
        benchmarks["proxy"] = ProxyBenchmark.RunAsync;
}
