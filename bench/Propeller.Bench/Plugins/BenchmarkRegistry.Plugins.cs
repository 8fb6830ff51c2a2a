using Propeller.Bench.Plugins;

namespace Propeller.Bench;

internal static partial class BenchmarkRegistry
{
    static partial void AddPlugins(IDictionary<string, Func<string[], CancellationToken, Task<int>>> benchmarks) =>
        benchmarks["plugins"] = PluginsBenchmark.RunAsync;
}
