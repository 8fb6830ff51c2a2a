using System.Collections.Concurrent;
using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using Microsoft.Extensions.Logging;
using Propeller.Plugins.Abi;
using Propeller.Plugins.Hosting;
using Propeller.WasmHost;
using Wasmtime;

namespace Propeller.Plugins.Runtime;

/// <summary>
/// A compiled plugin with its manifest and a pool of instances. The compiled module is shared; every call rents an
/// instance of its own (at most <see cref="PluginHostOptions.MaxInstancesPerPlugin"/> at once, two when it has notification hooks and that is 1), and an instance that
/// failed (trap, timeout, limit) is thrown away, so one bad call never poisons the next.
/// </summary>
public sealed class LoadedPlugin : IDisposable
{
    /// <summary>
    /// Lines of one stream (stdout, stderr) logged per call; the rest is counted in one summary record. The capture keeps
    /// 64 KiB per stream, and each line was a log record: a call writing 64 KiB of newlines to both made 131,072 records.
    /// </summary>
    internal const int MaxLoggedLinesPerStream = 50;

    private readonly PluginRuntime _runtime;
    private readonly Module _module;
    private readonly ConcurrentQueue<PluginInstance> _idle = new();
    private readonly SemaphoreSlim _slots;

    // Background notifications hold at most half of the slots (at least one), so the hooks that someone waits for
    // (authorize, enrichment, placement) always find the other half: a slow on_task_complete under a burst of results
    // held every slot, and each of those calls waited behind the queued notifications. A plugin with notification hooks
    // has at least two slots for that reason (MaxInstancesPerPlugin 1 gave the notifications the only one).
    private readonly SemaphoreSlim _notificationSlots;
    private volatile bool _retired;

    // When a call's start function last ran over the plugin's own time limit (a Stopwatch timestamp; 0 once one finished):
    // for StartRetryInterval after it, a call that needs a new instance fails at once instead of running the start again.
    // A start function that never returns otherwise held every call for the whole timeout_ms (up to a day) before it
    // was denied, each holding a slot and a store.
    private long _startTimedOutAt;

    /// <summary>How long after a start function ran over its time calls fail without trying it again.</summary>
    internal static readonly TimeSpan StartRetryInterval = TimeSpan.FromSeconds(30);

    private LoadedPlugin(PluginRuntime runtime, string name, string file, string hash, PluginManifest manifest, Module module, PluginHooks hooks, PluginCounters counters)
    {
        _runtime = runtime;
        Name = name;
        File = file;
        Hash = hash;
        Manifest = manifest;
        _module = module;
        Hooks = hooks;
        Counters = counters;
        var instances = Math.Max(runtime.Options.MaxInstancesPerPlugin, (hooks & (PluginHooks.TaskStart | PluginHooks.TaskComplete)) != PluginHooks.None ? 2 : 1);
        _slots = new SemaphoreSlim(instances, instances);
        var notifications = Math.Max(1, instances / 2);
        _notificationSlots = new SemaphoreSlim(notifications, notifications);
    }

    /// <summary>The file name without <c>.wasm</c>.</summary>
    public string Name { get; }

    /// <summary>The full path it was loaded from.</summary>
    public string File { get; }

    /// <summary>SHA-256 of the module bytes (lower-case hex): the plugin's version for the job bridge.</summary>
    public string Hash { get; }

    public PluginManifest Manifest { get; }

    public PluginLimits Limits => Manifest.Limits;

    public PluginHooks Hooks { get; }

    public PluginCounters Counters { get; }

    public bool Active => Manifest.Active;

    public bool Has(PluginHooks hook) => Hooks.HasFlag(hook);

    /// <summary>
    /// Reads, compiles and instantiates once (the instance is kept for the pool). Throws <see cref="PluginLoadException"/>
    /// when the file cannot be used: unreadable, not a module, bad manifest, missing memory/plugin_alloc/plugin_free,
    /// a hook with the wrong signature, or an instantiation failure (unknown import, start trap, memory over the limit).
    /// A start function over its time at load (<see cref="PluginHostOptions.LoadTimeout"/> or the
    /// plugin's time limit, the smaller) leaves the plugin loaded without a ready instance (logged as a warning).
    /// Throws <see cref="OperationCanceledException"/> when <paramref name="cancellationToken"/> ended the start function.
    /// </summary>
    public static LoadedPlugin Load(PluginRuntime runtime, string path, PluginCounters counters, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(runtime);
        var name = Path.GetFileNameWithoutExtension(path);
        try
        {
            var manifest = PluginManifest.Load(Path.ChangeExtension(path, ".json"), runtime.Options.DefaultLimits);
            var bytes = System.IO.File.ReadAllBytes(path);
            var hash = Convert.ToHexStringLower(SHA256.HashData(bytes));
            var module = runtime.Modules.GetOrCompile(name, bytes);
            var hooks = CheckExports(module);
            var plugin = new LoadedPlugin(runtime, name, path, hash, manifest, module, hooks, counters);
            // The trial instance runs the start function under the hook limits, its time capped by the load limit: a load
            // runs at start-up (in the catalog's factory) and under the reload lock, and timeout_ms may be a day, so a
            // start function that slept held the start-up or every reload for up to that long.
            var timeout = LoadLimit(manifest.Limits.Timeout, runtime.Options.LoadTimeout);
            try
            {
                plugin._idle.Enqueue(plugin.CreateInstance(manifest.Limits.MemoryMb, manifest.Limits.Fuel, timeout, cancellationToken, trial: true));
            }
            catch (WasmtimeException e) when (e.InnerException is OperationCanceledException && cancellationToken.IsCancellationRequested)
            {
                throw new OperationCanceledException("the plugin load was cancelled", e, cancellationToken);
            }
            catch (PluginCallException e) when (e.Kind == PluginFailureKind.Timeout)
            {
                // A start function over its time (the load's cap, or the plugin's own limit on a slow or busy machine) is
                // not a broken file: the plugin stays, with no instance ready, and each call makes its own under the
                // plugin's limits, a call that times out failing (an authorize denies). Skipping it left an authorize
                // plugin out of the chain, and a chain without it allows everything (at start-up there is no version
                // loaded before to keep). The load stays bounded.
                PluginLog.LoadedWithoutInstance(runtime.Logger, name, timeout.TotalMilliseconds, manifest.Limits.Timeout.TotalMilliseconds);
            }

            return plugin;
        }
        catch (Exception e) when (e is WasmtimeException or IOException or UnauthorizedAccessException or FormatException or PluginCallException)
        {
            throw new PluginLoadException(name, path, e.Message, e);
        }
    }

    /// <summary>The smaller of the plugin's time limit and the host's load limit (a negative one is no limit).</summary>
    private static TimeSpan LoadLimit(TimeSpan timeout, TimeSpan loadTimeout) =>
        loadTimeout < TimeSpan.Zero ? timeout : timeout < TimeSpan.Zero || loadTimeout < timeout ? loadTimeout : timeout;

    /// <summary>The ABI's exports and their signatures (spec §7.3), read from the module before anything runs.</summary>
    private static PluginHooks CheckExports(Module module)
    {
        var exports = module.Exports.ToDictionary(e => e.Name, StringComparer.Ordinal);
        if (!exports.TryGetValue("memory", out var memory) || memory is not MemoryExport)
        {
            throw new FormatException("no exported memory");
        }

        foreach (var required in (string[])["plugin_alloc", "plugin_free"])
        {
            if (!exports.TryGetValue(required, out var export) || export is not FunctionExport)
            {
                throw new FormatException($"missing required export {required}");
            }
        }

        Require("plugin_alloc", [ValueKind.Int32], [ValueKind.Int32], "(i32) -> i32");
        Require("plugin_free", [ValueKind.Int32, ValueKind.Int32], [], "(i32, i32) -> ()");
        PluginHooks hooks = default;
        foreach (var (name, hook, returns) in PluginHookNames.All)
        {
            if (exports.ContainsKey(name))
            {
                Require(name, [ValueKind.Int32, ValueKind.Int32], returns ? [ValueKind.Int64] : null, returns ? "(i32, i32) -> i64" : "(i32, i32) -> any");
                hooks |= hook;
            }
        }

        return hooks;

        void Require(string name, ValueKind[] parameters, ValueKind[]? results, string signature)
        {
            if (exports[name] is not FunctionExport function
                || !function.Parameters.SequenceEqual(parameters)
                || (results is not null && !function.Results.SequenceEqual(results)))
            {
                throw new FormatException($"export {name} must be a function {signature}");
            }
        }
    }

    /// <summary>
    /// Calls <paramref name="hook"/> with <paramref name="request"/> under the plugin's hook limits. Returns the response
    /// bytes (null for a zero-length answer or a void hook). Throws <see cref="PluginCallException"/> when the plugin
    /// fails and <see cref="OperationCanceledException"/> when <paramref name="cancellationToken"/> stopped it.
    /// </summary>
    public async ValueTask<byte[]?> CallAsync(string hook, byte[] request, bool returnsValue, CancellationToken cancellationToken)
    {
        await _slots.WaitAsync(cancellationToken);
        try
        {
            return CallRented(hook, request, returnsValue, Limits.Fuel, Limits.Timeout, Limits.MemoryMb, pooled: true, cancellationToken);
        }
        finally
        {
            _slots.Release();
        }
    }

    /// <summary>A background notification (on_task_start, on_task_complete): as <see cref="CallAsync"/>, within the
    /// notifications' share of the slots.</summary>
    public async ValueTask NotifyAsync(string hook, byte[] request, CancellationToken cancellationToken)
    {
        await _notificationSlots.WaitAsync(cancellationToken);
        try
        {
            await CallAsync(hook, request, returnsValue: false, cancellationToken);
        }
        finally
        {
            _notificationSlots.Release();
        }
    }

    /// <summary>Runs <c>handle_job</c> in a fresh instance under the job limits (job_fuel, job_memory_mb, job_timeout).</summary>
    public byte[]? CallJob(byte[] request, CancellationToken cancellationToken) =>
        CallRented(PluginHookNames.HandleJob, request, true, Limits.JobFuel, Limits.JobTimeout, Limits.JobMemoryMb, pooled: false, cancellationToken);

    private byte[]? CallRented(string hook, byte[] request, bool returnsValue, long fuel, TimeSpan timeout, int memoryMb, bool pooled, CancellationToken cancellationToken)
    {
        var started = Stopwatch.GetTimestamp();
        PluginInstance? instance = null;
        var healthy = false;
        try
        {
            byte[]? response;
            if (pooled && _idle.TryDequeue(out var idle))
            {
                instance = idle;
                response = instance.Call(hook, request, returnsValue, fuel, timeout, cancellationToken);
            }
            else
            {
                // A fresh instance: its start function and the call share the call's fuel and wall clock (before, each had
                // all of both, so a start function that spent nearly all of them doubled what one call could take).
                instance = CreateInstance(memoryMb, fuel, timeout, cancellationToken);
                var left = timeout < TimeSpan.Zero ? timeout : TimeSpan.FromTicks(Math.Max(0, (timeout - Stopwatch.GetElapsedTime(started)).Ticks));
                response = instance.Call(hook, request, returnsValue, instance.FuelLeft, left, cancellationToken);
            }

            healthy = true;
            Record(hook, started, null);
            return response;
        }
        catch (WasmtimeException e) when (e.InnerException is OperationCanceledException && cancellationToken.IsCancellationRequested)
        {
            throw new OperationCanceledException("the plugin call was cancelled", e, cancellationToken);
        }
        catch (Exception e) when (e is WasmtimeException or PluginCallException)
        {
            var failure = Classify(e, fuel, timeout, memoryMb, instance is { MemoryAtLimit: true });
            Record(hook, started, failure.Kind);
            PluginLog.CallFailed(_runtime.Logger, Name, hook, failure.Kind, failure.Message);
            throw failure;
        }
        finally
        {
            if (instance is not null)
            {
                DrainOutput(instance);
                if (healthy && pooled && !_retired)
                {
                    _idle.Enqueue(instance);

                    // A reload may have retired the plugin between the check and the enqueue: do not keep it idle then.
                    if (_retired && _idle.TryDequeue(out var late))
                    {
                        late.Dispose();
                    }
                }
                else
                {
                    instance.Dispose();
                }
            }
        }
    }

    /// <summary>Counts a call that the caller found malformed after it returned (the instance itself stays healthy).</summary>
    internal void RecordMalformed(string hook, string message)
    {
        Counters.Failure();
        _runtime.Metrics.Failure(Name, hook, PluginFailureKind.Malformed);
        PluginLog.CallFailed(_runtime.Logger, Name, hook, PluginFailureKind.Malformed, PluginResponses.Truncate(message));
    }

    internal void RecordDeny(string hook)
    {
        Counters.Deny();
        _runtime.Metrics.Deny(Name, hook);
    }

    private void Record(string hook, long started, PluginFailureKind? failure)
    {
        Counters.Call();
        if (failure is not null)
        {
            Counters.Failure();
        }

        _runtime.Metrics.Call(Name, hook, Stopwatch.GetElapsedTime(started), failure);
    }

    private static PluginCallException Classify(Exception e, long fuel, TimeSpan timeout, int memoryMb, bool memoryAtLimit) => e switch
    {
        PluginCallException call => call,
        WasmtimeException { InnerException: TimeoutException } t => new(PluginFailureKind.Timeout, $"timed out after {timeout.TotalMilliseconds:0} ms", t),

        // Wasmtime refuses a memory.grow past the cap with -1; a call that fails with the memory grown to the cap (by it or
        // an earlier call on the instance) ran into the cap, whatever the guest did next (trap, loop until out of fuel or
        // time). ADR 0007. Memory that never grew past its declared size is classified by what stopped the call
        // (PluginInstance.MemoryAtLimit).
        WasmtimeException { ExitCode: null } t when memoryAtLimit => new(PluginFailureKind.MemoryLimit, $"memory limit of {memoryMb} MiB exceeded", t),
        TrapException { Type: TrapCode.OutOfFuel } t => new(PluginFailureKind.OutOfFuel, $"out of fuel (limit {fuel})", t),
        TrapException t => new(PluginFailureKind.Trap, WasmErrors.Trap(t), t),
        WasmtimeException { ExitCode: { } code } x => new(PluginFailureKind.Trap, $"exited with code {code}", x),
        WasmtimeException x => new(PluginFailureKind.Abi, WasmErrors.Reason(x), x),
        _ => new(PluginFailureKind.Abi, e.Message, e),
    };

    /// <summary>A new instance (its start function run). <paramref name="trial"/>: the load's, under the load's cap, whose
    /// timeout says nothing of the plugin's own limit (a call tries the start function again at once).</summary>
    private PluginInstance CreateInstance(int memoryMb, long fuel, TimeSpan timeout, CancellationToken cancellationToken, bool trial = false)
    {
        var timedOutAt = Volatile.Read(ref _startTimedOutAt);
        if (!trial && timedOutAt != 0 && Stopwatch.GetElapsedTime(timedOutAt) < StartRetryInterval)
        {
            throw new PluginCallException(
                PluginFailureKind.Timeout, $"start function timed out {Stopwatch.GetElapsedTime(timedOutAt).TotalSeconds:0} s ago; it is tried again {StartRetryInterval.TotalSeconds:0} s after");
        }

        try
        {
            var instance = new PluginInstance(_runtime, this, _module, memoryMb, fuel, timeout, cancellationToken);
            Volatile.Write(ref _startTimedOutAt, 0);
            return instance;
        }
        catch (WasmtimeException e) when (e.InnerException is TimeoutException)
        {
            if (!trial)
            {
                Volatile.Write(ref _startTimedOutAt, Stopwatch.GetTimestamp());
            }

            throw new PluginCallException(PluginFailureKind.Timeout, $"start function timed out after {timeout.TotalMilliseconds:0} ms", e);
        }
        catch (WasmtimeException e) when (e is not TrapException && e.Message.Contains("exceeds memory limits", StringComparison.Ordinal))
        {
            throw new PluginCallException(PluginFailureKind.MemoryLimit, $"memory limit of {memoryMb} MiB exceeded at instantiation", e);
        }
    }

    private void DrainOutput(PluginInstance instance)
    {
        var stdout = instance.Stdout.Drain(out var droppedOut);
        var stderr = instance.Stderr.Drain(out var droppedErr);
        var (omittedOut, omittedOutBytes) = LogLines(stdout, PluginLog.Stdout);
        var (omittedErr, omittedErrBytes) = LogLines(stderr, PluginLog.Stderr);
        if (omittedOut + omittedErr > 0)
        {
            PluginLog.OutputLinesOmitted(_runtime.Logger, Name, omittedOut + omittedErr, omittedOutBytes + omittedErrBytes, MaxLoggedLinesPerStream);
        }

        if (droppedOut + droppedErr > 0)
        {
            PluginLog.OutputDropped(_runtime.Logger, Name, droppedOut + droppedErr);
        }
    }

    /// <summary>Logs the first <see cref="MaxLoggedLinesPerStream"/> of <paramref name="lines"/>; returns how many lines
    /// (and bytes, with their newlines) were left out.</summary>
    private (int Lines, long Bytes) LogLines(List<string> lines, Action<ILogger, string, string> log)
    {
        for (var i = 0; i < Math.Min(lines.Count, MaxLoggedLinesPerStream); i++)
        {
            log(_runtime.Logger, Name, lines[i]);
        }

        long bytes = 0;
        for (var i = MaxLoggedLinesPerStream; i < lines.Count; i++)
        {
            bytes += Encoding.UTF8.GetByteCount(lines[i]) + 1;
        }

        return (Math.Max(0, lines.Count - MaxLoggedLinesPerStream), bytes);
    }

    /// <summary>After a reload: idle instances go now, rented ones when their call ends (in-flight calls finish).</summary>
    internal void Retire()
    {
        _retired = true;
        while (_idle.TryDequeue(out var instance))
        {
            instance.Dispose();
        }
    }

    public void Dispose() => Retire();
}
