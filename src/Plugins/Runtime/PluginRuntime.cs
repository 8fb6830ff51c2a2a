using System.Text;
using Microsoft.Extensions.Logging;
using Propeller.Plugins.Hosting;
using Propeller.Wasm;

namespace Propeller.Plugins.Runtime;

/// <summary>
/// What every plugin instance shares: one engine (fuel metering and interruption compiled in; modules cached by hash),
/// the host options, logging, metrics and the host imports (<c>queue.enqueue</c>).
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

        // The guest thread keeps an 8 MiB margin below its floor (GuestThread.StackMargin): 32 MiB leaves plugins 24 MiB.
        Engine = new Engine(new Config().WithConsumeFuel(true).WithEpochInterruption(true).WithGuestStackSize(32 << 20));
    }

    public Engine Engine { get; }

    public PluginHostOptions Options { get; }

    public ILogger Logger { get; }

    public PluginMetrics Metrics { get; }

    /// <summary>Where <c>queue.enqueue</c> sends jobs; null answers ENOSYS.</summary>
    public IPluginJobSink? Jobs { get; set; }

    /// <summary>
    /// <c>queue.enqueue(type_ptr, type_len, payload_ptr, payload_len, opts_ptr, opts_len, id_ptr, id_cap) -> errno</c>
    /// (docs/plugins.md). On success the job id (36 ASCII characters) is written to <c>id_ptr</c> when <c>id_cap</c> ≥ 36.
    /// </summary>
    internal void DefineHostImports(Linker linker)
    {
        linker.DefineFunction(
            "queue",
            "enqueue",
            (Func<Caller, int, int, int, int, int, int, int, int, int>)((caller, typePtr, typeLen, payloadPtr, payloadLen, optsPtr, optsLen, idPtr, idCap) =>
                Enqueue(caller, typePtr, typeLen, payloadPtr, payloadLen, optsPtr, optsLen, idPtr, idCap)));
    }

    private int Enqueue(Caller caller, int typePtr, int typeLen, int payloadPtr, int payloadLen, int optsPtr, int optsLen, int idPtr, int idCap)
    {
        if (caller.Data is not PluginInstance.InstanceContext context || caller.GetMemory("memory") is not { } memory)
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
        else if (!InBounds(memory, typePtr, typeLen) || !InBounds(memory, payloadPtr, payloadLen) || !InBounds(memory, optsPtr, optsLen))
        {
            errno = PluginErrno.Fault;
        }
        else
        {
            var span = memory.GetSpan();
            string type;
            try
            {
                type = new UTF8Encoding(false, true).GetString(span.Slice(typePtr, typeLen));
            }
            catch (DecoderFallbackException)
            {
                return Reject(plugin, PluginErrno.Invalid);
            }

            errno = Jobs.Enqueue(plugin, context.Hook, type, span.Slice(payloadPtr, payloadLen), span.Slice(optsPtr, optsLen), out id);
        }

        if (errno != PluginErrno.Success)
        {
            return Reject(plugin, errno);
        }

        plugin.Counters.JobEnqueued();
        Metrics.JobEnqueued(plugin.Name);
        if (idCap >= 36 && InBounds(memory, idPtr, 36))
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

    private static bool InBounds(Memory memory, int ptr, int len) => len == 0 || (ptr >= 0 && len > 0 && (long)ptr + len <= memory.Length);

    public void Dispose() => Engine.Dispose();
}
