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
    private readonly List<WeakReference<ExecutionState>> _epochStates = [];
    private long _epoch;

    public Engine(Config? config = null)
    {
        Config = config ?? new Config();
    }

    public Config Config { get; }

    public int CachedModuleCount => _cache.Count;

    /// <summary>The engine's epoch (see <see cref="Config.EpochInterruption"/>).</summary>
    public long CurrentEpoch => Volatile.Read(ref _epoch);

    /// <summary>
    /// Advances the epoch; running guest code of every store whose deadline it reaches traps with
    /// <see cref="TrapCode.Interrupt"/> at its next function entry or loop header.
    /// </summary>
    public void IncrementEpoch()
    {
        var now = Interlocked.Increment(ref _epoch);
        lock (_epochStates)
        {
            _epochStates.RemoveAll(weak => !weak.TryGetTarget(out _));
            foreach (var weak in _epochStates)
            {
                if (weak.TryGetTarget(out var state) && now >= Volatile.Read(ref state.EpochDeadline))
                {
                    Volatile.Write(ref state.Interrupted, 1);
                }
            }
        }
    }

    /// <summary>Stores created with epoch interruption on, so IncrementEpoch can raise their flag.</summary>
    internal void RegisterForEpochs(ExecutionState state)
    {
        lock (_epochStates)
        {
            _epochStates.Add(new WeakReference<ExecutionState>(state));
        }
    }

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
