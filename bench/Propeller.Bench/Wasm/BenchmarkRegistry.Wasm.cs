namespace Propeller.Bench;

internal static partial class BenchmarkRegistry
{
    static partial void AddWasm(IDictionary<string, Func<string[], CancellationToken, Task<int>>> benchmarks) =>
        benchmarks["wasm"] = WasmBenchmark.RunAsync;
}
