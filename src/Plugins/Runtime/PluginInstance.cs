using System.Diagnostics;
using Propeller.Plugins.Abi;
using Propeller.WasmHost;
using Wasmtime;

namespace Propeller.Plugins.Runtime;

/// <summary>
/// One instance of a plugin in its own Wasmtime store and WASI context. A call has it to itself (the pool in
/// <see cref="LoadedPlugin"/> hands it out), so a store is never used by two threads at once and concurrent calls never
/// share guest state. Exports are looked up once (Wasmtime's GetFunction is the costly step of a call).
/// </summary>
internal sealed class PluginInstance : IDisposable
{
    private const long WasmPageBytes = 64 * 1024;

    private readonly Store _store;
    private readonly Memory _memory;
    private readonly Func<int, int> _alloc;
    private readonly Action<int, int> _free;
    private readonly Instance _instance;
    private readonly WasmEngine _engine;
    private readonly Dictionary<string, Func<int, int, long>> _hooks = new(StringComparer.Ordinal);
    private readonly Dictionary<string, Action<int, int>> _voidHooks = new(StringComparer.Ordinal);


    /// <param name="fuel">The fuel of the module's <c>start</c> function (run by the instantiation): the budget of the call
    /// the instance is made for (the plugin's hook or job fuel), which the call then has what is left of
    /// (<see cref="FuelLeft"/>).</param>
    /// <param name="timeout">The wall-clock limit of the <c>start</c> function: the limit of the call the instance is made
    /// for, which the call then has what is left of.</param>
    /// <param name="cancellationToken">The caller's token, which also ends a <c>start</c> function that runs or sleeps.</param>
    public PluginInstance(PluginRuntime runtime, LoadedPlugin plugin, Module module, int memoryMb, long fuel, TimeSpan timeout, CancellationToken cancellationToken)
    {
        Stdout = new PluginOutput(runtime.Options.OutputCaptureBytes);
        Stderr = new PluginOutput(runtime.Options.OutputCaptureBytes);
        Context = new InstanceContext(plugin);
        MemoryLimit = (long)memoryMb << 20;
        _engine = runtime.Engine;
        _store = new Store(_engine.Engine, Context);

        // Guest code runs in the instantiation below and in Call, each under its own lease of the epoch ticker: between
        // calls the instance holds none, so an idle plugin does not keep the ticker awake.
        EpochLease? ticking = null;
        try
        {
            MemoryLimits.Cap(_store, MemoryLimit); // the plugin's total: one linear memory, bounded tables
            _store.SetWasiConfiguration(new WasiConfiguration()
                .WithStandardOutputCallback(data => Stdout.Write(data))
                .WithStandardErrorCallback(data => Stderr.Write(data)));
            _store.Fuel = (ulong)fuel;

            // Checked at each epoch tick while guest code runs: the call's wall-clock limit and the caller's token. The
            // instantiation runs the module's start function, which is guest code like any hook: without a deadline a
            // start that loops on a large fuel limit or sleeps in poll_oneoff would hold the load (or the call) for ever.
            ticking = _engine.Watch(_store, Check);
            Arm(timeout, cancellationToken);
            _instance = runtime.Linker.Instantiate(_store, module);
            _memory = _instance.GetMemory("memory") ?? throw new PluginCallException(PluginFailureKind.Abi, "no exported memory");
            _alloc = _instance.GetFunction<int, int>("plugin_alloc") ?? throw new PluginCallException(PluginFailureKind.Abi, "plugin_alloc must be a function (i32) -> i32");
            _free = _instance.GetAction<int, int>("plugin_free") ?? throw new PluginCallException(PluginFailureKind.Abi, "plugin_free must be a function (i32, i32) -> ()");
        }
        catch
        {
            _store.Dispose();
            throw;
        }
        finally
        {
            Disarm();
            ticking?.Dispose();
        }
    }

    public InstanceContext Context { get; }

    public PluginOutput Stdout { get; }

    public PluginOutput Stderr { get; }

    /// <summary>The fuel left in the store (after the instantiation: what its <c>start</c> function left of its budget).</summary>
    public long FuelLeft => (long)_store.Fuel;

    /// <summary>The store's memory cap in bytes.</summary>
    public long MemoryLimit { get; }

    /// <summary>
    /// True when a failed call ran into the memory cap: the memory grew past its declared size (in this call, or in an
    /// earlier one on this reused instance) and is at the cap (<see cref="MemoryLimits.Reached"/>). Memory that never grew
    /// was refused no grow: with a cap close to the declared size (memory_mb 1, or 2 for a module of 1.1 MiB) the memory
    /// is within <see cref="MemoryLimits.Margin"/> of the cap from the start, and every out-of-fuel or trap was reported as
    /// "memory limit exceeded".
    /// </summary>
    public bool MemoryAtLimit => _memory.GetLength() > _memory.Minimum * WasmPageBytes && MemoryLimits.Reached(_memory, MemoryLimit);

    /// <summary>
    /// The ABI of spec §7.3: alloc, copy in, call, unpack (ptr &lt;&lt; 32 | len), copy out, free the output, free the
    /// input. Returns null for a zero-length answer (and for void hooks). Fuel covers the whole sequence;
    /// <paramref name="timeout"/> or <paramref name="cancellationToken"/> end it at the next epoch tick.
    /// </summary>
    public byte[]? Call(string hook, byte[] request, bool returnsValue, long fuel, TimeSpan timeout, CancellationToken cancellationToken)
    {
        Context.Hook = hook;
        _store.Fuel = (ulong)fuel;
        Arm(timeout, cancellationToken);
        using var ticking = _engine.KeepTicking();
        try
        {
            return Invoke(hook, request, returnsValue);
        }
        finally
        {
            Context.Hook = null;
            Disarm();
        }
    }

    /// <summary>Sets the running guest code's wall-clock limit and token (what the epoch check and a sleep honour).</summary>
    private void Arm(TimeSpan timeout, CancellationToken cancellationToken)
    {
        var ticks = timeout.TotalSeconds * Stopwatch.Frequency;
        Context.Deadline = timeout < TimeSpan.Zero || ticks >= long.MaxValue / 2 ? long.MaxValue : Stopwatch.GetTimestamp() + (long)ticks;
        Context.Cancellation = cancellationToken;
    }

    private void Disarm()
    {
        Context.Deadline = long.MaxValue;
        Context.Cancellation = default;
    }

    /// <summary>The epoch check: the same ends as a waiting host call's (<see cref="InstanceContext.ThrowIfEnded"/>).</summary>
    private void Check() => Context.ThrowIfEnded(cut: Stopwatch.GetTimestamp() > Context.Deadline);

    private byte[]? Invoke(string hook, byte[] request, bool returnsValue)
    {
        var inLen = request.Length;
        var inPtr = _alloc(inLen);
        if (inPtr == 0)
        {
            throw new PluginCallException(PluginFailureKind.Abi, "plugin_alloc returned 0");
        }

        if ((uint)inPtr + (long)inLen > _memory.GetLength())
        {
            throw new PluginCallException(PluginFailureKind.Abi, $"plugin_alloc returned {(uint)inPtr}, beyond memory for {inLen} bytes");
        }

        request.CopyTo(_memory.GetSpan((uint)inPtr, inLen));
        byte[]? response = null;
        if (returnsValue)
        {
            var packed = (ulong)Returning(hook)(inPtr, inLen);
            var outPtr = (uint)(packed >> 32);
            var outLen = (uint)packed;
            if (outLen > 0)
            {
                if (outLen > PluginResponses.MaxAnswerBytes)
                {
                    throw new PluginCallException(PluginFailureKind.Malformed, $"answer of {outLen} bytes is over the limit of {PluginResponses.MaxAnswerBytes} bytes");
                }

                if (outPtr + (long)outLen > _memory.GetLength())
                {
                    throw new PluginCallException(PluginFailureKind.Abi, $"response {outPtr}+{outLen} is beyond memory ({_memory.GetLength()} bytes)");
                }

                response = _memory.GetSpan(outPtr, (int)outLen).ToArray();
                _free((int)outPtr, (int)outLen);
            }
            else
            {
                response = [];
            }
        }
        else
        {
            Void(hook)(inPtr, inLen);
        }

        _free(inPtr, inLen);
        return response is { Length: 0 } ? null : response;
    }

    /// <summary>A hook that answers: (i32, i32) -> i64, checked when the plugin loaded.</summary>
    private Func<int, int, long> Returning(string hook)
    {
        if (!_hooks.TryGetValue(hook, out var function))
        {
            function = _instance.GetFunction<int, int, long>(hook)
                ?? throw new PluginCallException(PluginFailureKind.Abi, $"export {hook} must be a function (i32, i32) -> i64");
            _hooks[hook] = function;
        }

        return function;
    }

    /// <summary>A fire-and-forget hook: (i32, i32) with any results, which are ignored.</summary>
    private Action<int, int> Void(string hook)
    {
        if (!_voidHooks.TryGetValue(hook, out var action))
        {
            var function = _instance.GetFunction(hook) ?? throw new PluginCallException(PluginFailureKind.Abi, $"no {hook} export");
            action = (ptr, len) => function.Invoke(ptr, len);
            _voidHooks[hook] = action;
        }

        return action;
    }

    public void Dispose() => _store.Dispose();

    /// <summary>What host imports see through <see cref="Caller.GetData"/>: which plugin calls, from which hook.</summary>
    internal sealed class InstanceContext(LoadedPlugin plugin) : IWaitLimit
    {
        public LoadedPlugin Plugin { get; } = plugin;

        public string? Hook { get; set; }

        /// <summary>The running call's wall-clock limit (a <see cref="Stopwatch"/> timestamp) and its caller's token: what
        /// a host call that waits (<c>poll_oneoff</c>) must not wait past.</summary>
        public long Deadline { get; set; } = long.MaxValue;

        public CancellationToken Cancellation { get; set; }

        public void ThrowIfEnded(bool cut)
        {
            Cancellation.ThrowIfCancellationRequested();
            if (cut)
            {
                throw new TimeoutException("the plugin call ran past its time limit");
            }
        }
    }
}
