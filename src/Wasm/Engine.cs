using System.Collections.Concurrent;
using System.Security.Cryptography;
using Propeller.Wasm.Binary;
using Propeller.Wasm.Compilation;

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

    public void Dispose() => _cache.Clear();

    internal CompiledModule Compile(byte[] bytes)
    {
        var key = Convert.ToHexString(SHA256.HashData(bytes));
        var lazy = _cache.GetOrAdd(key, _ => new Lazy<CompiledModule>(() => ModuleCompiler.Compile(ModuleDecoder.Decode(bytes))));
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
