namespace Propeller.Bench;

/// <summary>
/// The benchmarks this build knows. Each area adds its entries in its own file by implementing one of the partial
/// methods below, so areas never edit a shared file (an unimplemented partial method compiles to nothing).
/// </summary>
internal static partial class BenchmarkRegistry
{
    public static SortedDictionary<string, Func<string[], CancellationToken, Task<int>>> All()
    {
        var all = new SortedDictionary<string, Func<string[], CancellationToken, Task<int>>>(StringComparer.Ordinal);
        AddEventStore(all);
        AddMqtt(all);
        AddWasm(all);
        AddWasi(all);
        AddManager(all);
        AddEndToEnd(all);
        AddPlugins(all);
        AddUi(all);
        AddComponents(all);
        AddProxy(all);
        AddHttpProxy(all);
        return all;
    }

    static partial void AddEventStore(IDictionary<string, Func<string[], CancellationToken, Task<int>>> benchmarks);

    static partial void AddMqtt(IDictionary<string, Func<string[], CancellationToken, Task<int>>> benchmarks);

    static partial void AddWasm(IDictionary<string, Func<string[], CancellationToken, Task<int>>> benchmarks);

    static partial void AddWasi(IDictionary<string, Func<string[], CancellationToken, Task<int>>> benchmarks);

    static partial void AddManager(IDictionary<string, Func<string[], CancellationToken, Task<int>>> benchmarks);

    static partial void AddEndToEnd(IDictionary<string, Func<string[], CancellationToken, Task<int>>> benchmarks);

    static partial void AddPlugins(IDictionary<string, Func<string[], CancellationToken, Task<int>>> benchmarks);

    static partial void AddUi(IDictionary<string, Func<string[], CancellationToken, Task<int>>> benchmarks);

    static partial void AddComponents(IDictionary<string, Func<string[], CancellationToken, Task<int>>> benchmarks);
    static partial void AddProxy(IDictionary<string, Func<string[], CancellationToken, Task<int>>> benchmarks);

    static partial void AddHttpProxy(IDictionary<string, Func<string[], CancellationToken, Task<int>>> benchmarks);
}
