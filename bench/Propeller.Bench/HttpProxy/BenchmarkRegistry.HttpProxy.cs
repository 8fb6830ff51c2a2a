namespace Propeller.Bench;

internal static partial class BenchmarkRegistry
{
    static partial void AddHttpProxy(IDictionary<string, Func<string[], CancellationToken, Task<int>>> benchmarks) =>
        benchmarks["http-proxy"] = HttpProxyBenchmark.RunAsync;
}
