using Propeller.Bench.Ui;

namespace Propeller.Bench;

internal static partial class BenchmarkRegistry
{
    static partial void AddUi(IDictionary<string, Func<string[], CancellationToken, Task<int>>> benchmarks)
    {
        benchmarks["cli"] = CliBenchmark.RunAsync;
        benchmarks["dashboard"] = DashboardBenchmark.RunAsync;
    }
}
