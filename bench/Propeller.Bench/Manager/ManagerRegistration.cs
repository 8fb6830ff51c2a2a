using Propeller.Bench.Manager;

namespace Propeller.Bench;

internal static partial class BenchmarkRegistry
{
    static partial void AddManager(IDictionary<string, Func<string[], CancellationToken, Task<int>>> benchmarks)
    {
        benchmarks["manager"] = ManagerBenchmark.RunAsync;
        benchmarks["manager-startup"] = ManagerStartupBenchmark.RunAsync;
    }
}
