using Propeller.Plugins.Hosting;
using Propeller.Plugins.Jobs;
using Propeller.Plugins.Runtime;

namespace Propeller.Plugins.Tests.Support;

/// <summary>A temporary plugin directory plus a catalog and gate over it.</summary>
internal sealed class PluginDir : IDisposable
{
    private PluginCatalog? _catalog;

    public PluginDir()
    {
        Path = Directory.CreateTempSubdirectory("plugins").FullName;
    }

    public string Path { get; }

    public ListLogger<PluginCatalog> Log { get; } = new();

    /// <summary>What the gates made by <see cref="Gate"/> log.</summary>
    public ListLogger<WasmPluginGate> GateLog { get; } = new();

    public PluginMetrics Metrics { get; } = new();

    public PluginDir Add(string name, string wat, string? manifest = null) => AddBytes(name, Wat.ToWasm(wat), manifest);

    public PluginDir AddBytes(string name, byte[] wasm, string? manifest = null)
    {
        File.WriteAllBytes(System.IO.Path.Combine(Path, name + ".wasm"), wasm);
        if (manifest is not null)
        {
            File.WriteAllText(System.IO.Path.Combine(Path, name + ".json"), manifest);
        }

        return this;
    }

    public PluginCatalog Catalog(IPluginJobSink? jobs = null, Action<PluginHostOptions>? configure = null)
    {
        if (_catalog is null)
        {
            var options = new PluginHostOptions { Directory = Path };
            configure?.Invoke(options);
            _catalog = new PluginCatalog(options, Log, Metrics, jobs);
            _catalog.Reload(TestContext.Current.CancellationToken);
        }

        return _catalog;
    }

    public WasmPluginGate Gate(IPluginJobSink? jobs = null) => new(Catalog(jobs), GateLog);

    public void Dispose()
    {
        _catalog?.Dispose();
        Metrics.Dispose();
        Directory.Delete(Path, true);
    }
}
