using System.Collections.Concurrent;
using System.Security.Cryptography;
using Propeller.Wasm.Binary;
using Propeller.Wasm.Compilation;
using Propeller.Wasm.Runtime;

namespace Propeller.Wasm;

/// <summary>Compiles modules and caches the compiled code by the SHA-256 of the module bytes.</summary>
public sealed class Engine : IDisposable
{
    private readonly ConcurrentDictionary<string, Lazy<CompiledModule>> _cache = new(StringComparer.Ordinal);

    public Engine(Config? config = null)
    {
        Config = config ?? new Config();
    }

    public Config Config { get; }

    public int CachedModuleCount => _cache.Count;

    /// <summary>The shared epoch counter read by generated code when <see cref="Config.EpochInterruption"/> is on.</summary>
    public long CurrentEpoch => Volatile.Read(ref Epoch.Value);

    internal EpochCounter Epoch { get; } = new();

    /// <summary>Advances the epoch; stores whose deadline it reaches trap with <see cref="TrapCode.Interrupt"/>.</summary>
    public void IncrementEpoch() => Interlocked.Increment(ref Epoch.Value);

    public void Dispose() => _cache.Clear();

    internal CompiledModule Compile(byte[] bytes)
    {
        var key = Convert.ToHexString(SHA256.HashData(bytes));
        var lazy = _cache.GetOrAdd(key, _ => new Lazy<CompiledModule>(() => ModuleCompiler.Compile(ModuleDecoder.Decode(bytes), Config)));
        try
        {
            return lazy.Value;
        }
        catch (WasmException)
        {
            _cache.TryRemove(key, out _);
            throw;
        }
    }
}
