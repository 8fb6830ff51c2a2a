using System.Diagnostics;
using System.Text;
using Microsoft.Extensions.Logging;
using Propeller.Plugins.Hosting;
using Propeller.WasmHost;
using Wasmtime;

namespace Propeller.Plugins.Runtime;

/// <summary>
/// What every plugin instance shares: the process's Wasmtime engine (<see cref="WasmEngine.Shared"/>: fuel metering and
/// epoch interruption compiled in), compiled modules by hash, one linker with WASI and the host imports
/// (<c>queue.enqueue</c>), the host options, logging and metrics.
/// </summary>
public sealed class PluginRuntime : IDisposable
{
    public PluginRuntime(PluginHostOptions options, ILogger logger, PluginMetrics metrics, IPluginJobSink? jobs = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        Options = options;
        Logger = logger;
        Metrics = metrics;
        Jobs = jobs;

        Engine = WasmEngine.Shared;
        Modules = new ModuleCache(Engine);
        Linker = new Linker(Engine.Engine);
        Linker.DefineWasi();
        WasiPoll.Shadow(Linker); // a sleep ends at the call's limit or cancellation (InstanceContext is its IWaitLimit)
        DefineHostImports(Linker);
    }

    public WasmEngine Engine { get; }

    /// <summary>Compiled plugins by SHA-256: a reload of an unchanged file does not compile again.</summary>
    public ModuleCache Modules { get; }

    /// <summary>WASI preview1 and <c>queue.enqueue</c>; instantiates every plugin (a linker is not tied to a store).</summary>
    public Linker Linker { get; }

    public PluginHostOptions Options { get; }

    public ILogger Logger { get; }

    public PluginMetrics Metrics { get; }

    /// <summary>Where <c>queue.enqueue</c> sends jobs; null answers ENOSYS.</summary>
    public IPluginJobSink? Jobs { get; set; }

    /// <summary>
    /// <c>queue.enqueue(type_ptr, type_len, payload_ptr, payload_len, opts_ptr, opts_len, id_ptr, id_cap) -> errno</c>
    /// (docs/plugins.md). On success the job id (36 ASCII characters) is written to <c>id_ptr</c> when <c>id_cap</c> ≥ 36.
    /// </summary>
    private void DefineHostImports(Linker linker)
    {
        linker.DefineFunction(
            "queue",
            "enqueue",
            (CallerFunc<int, int, int, int, int, int, int, int, int>)((caller, typePtr, typeLen, payloadPtr, payloadLen, optsPtr, optsLen, idPtr, idCap) =>
                Enqueue(caller, typePtr, typeLen, payloadPtr, payloadLen, optsPtr, optsLen, idPtr, idCap)));
    }

    private int Enqueue(Caller caller, int typePtr, int typeLen, int payloadPtr, int payloadLen, int optsPtr, int optsLen, int idPtr, int idCap)
    {
        if (caller.GetData() is not PluginInstance.InstanceContext context || caller.GetMemory("memory") is not { } memory)
        {
            return PluginErrno.Fault;
        }

        var plugin = context.Plugin;
        int errno;
        Guid id = default;
        if (!plugin.Manifest.Has(PluginManifest.QueueCapability))
        {
            errno = PluginErrno.Permission;
        }
        else if (Jobs is null)
        {
            errno = PluginErrno.NoSys;
        }
        else if (!InBounds(memory, typePtr, typeLen) || !InBounds(memory, payloadPtr, payloadLen) || !InBounds(memory, optsPtr, optsLen)
                 || (idCap >= 36 && !InBounds(memory, idPtr, 36)))
        {
            // The id's buffer too, before anything is stored: a job enqueued whose id could not be written was a job the
            // plugin could not know of (it got success).
            errno = PluginErrno.Fault;
        }
        else
        {
            var span = memory.GetSpan(0, (int)Math.Min(memory.GetLength(), int.MaxValue));
            string type;
            try
            {
                type = new UTF8Encoding(false, true).GetString(Slice(span, typePtr, typeLen));
            }
            catch (DecoderFallbackException)
            {
                return Reject(plugin, PluginErrno.Invalid);
            }

            // What is left of the hook's time: the epoch check cannot stop a host call, so the enqueue keeps to it itself.
            var left = context.Deadline == long.MaxValue ? Timeout.InfiniteTimeSpan : Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), context.Deadline);
            errno = Jobs.Enqueue(plugin, context.Hook, type, Slice(span, payloadPtr, payloadLen), Slice(span, optsPtr, optsLen), left, context.Cancellation, out id);
        }

        if (errno != PluginErrno.Success)
        {
            return Reject(plugin, errno);
        }

        plugin.Counters.JobEnqueued();
        Metrics.JobEnqueued(plugin.Name);
        if (idCap >= 36)
        {
            Encoding.ASCII.GetBytes(id.ToString("D"), memory.GetSpan(idPtr, 36));
        }

        return PluginErrno.Success;
    }

    private int Reject(LoadedPlugin plugin, int errno)
    {
        plugin.Counters.JobRejected();
        Metrics.JobRejected(plugin.Name, errno);
        return errno;
    }

    /// <summary>Whether a guest buffer lies in memory; an empty one anywhere (C's <c>NULL, 0</c>, Rust's dangling empty
    /// slice) is empty, whatever its pointer.</summary>
    private static bool InBounds(Memory memory, int ptr, int len) => len == 0 || (ptr >= 0 && len > 0 && (long)ptr + len <= memory.GetLength());

    /// <summary>A buffer <see cref="InBounds"/> said lies in memory. An empty one is not sliced: its pointer may be any
    /// value (before, one outside memory threw in the host call, and the hook trapped instead of getting an answer).</summary>
    private static ReadOnlySpan<byte> Slice(Span<byte> memory, int ptr, int len) => len == 0 ? [] : memory.Slice(ptr, len);

    /// <summary>The engine is the process's and stays; the linker goes.</summary>
    public void Dispose() => Linker.Dispose();
}
