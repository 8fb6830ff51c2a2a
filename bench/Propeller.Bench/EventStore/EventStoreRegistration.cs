using Propeller.Bench.EventStore;

namespace Propeller.Bench;

internal static partial class BenchmarkRegistry
{
    static partial void AddEventStore(IDictionary<string, Func<string[], CancellationToken, Task<int>>> benchmarks)
    {
        benchmarks["eventstore"] = EventStoreBenchmark.RunAsync;
        benchmarks["sweep"] = SweepBenchmark.RunAsync;
    }
}
