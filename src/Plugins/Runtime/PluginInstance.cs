using Propeller.Wasm;
using Propeller.Wasm.Wasi;

namespace Propeller.Plugins.Runtime;

/// <summary>
/// One instance of a plugin in its own store, thread and WASI context. A call has it to itself (the pool in
/// <see cref="LoadedPlugin"/> hands it out), so concurrent calls never share guest state.
/// </summary>
internal sealed class PluginInstance : IDisposable
{
    private readonly Store _store;
    private readonly Memory _memory;
    private readonly Function _alloc;
    private readonly Function _free;
    private readonly Instance _instance;

    public PluginInstance(PluginRuntime runtime, LoadedPlugin plugin, Module module, int memoryMb)
    {
        Stdout = new PluginOutput(runtime.Options.OutputCaptureBytes);
        Stderr = new PluginOutput(runtime.Options.OutputCaptureBytes);
        Context = new InstanceContext(plugin);
        _store = new Store(runtime.Engine, Context);
        try
        {
            _store.SetLimits(new StoreLimits { MemorySize = (long)memoryMb << 20, TrapOnGrowFailure = true });
            var linker = new Linker(runtime.Engine);
            new WasiContext(new WasiConfiguration().WithStandardOutput(Stdout).WithStandardError(Stderr)).DefineIn(linker);
            runtime.DefineHostImports(linker);
            _store.SetFuel(plugin.Limits.Fuel);
            _instance = linker.Instantiate(_store, module);
            _memory = _instance.GetMemory("memory") ?? throw new PluginCallException(PluginFailureKind.Abi, "no exported memory");
            _alloc = _instance.GetFunction("plugin_alloc") ?? throw new PluginCallException(PluginFailureKind.Abi, "no plugin_alloc export");
            _free = _instance.GetFunction("plugin_free") ?? throw new PluginCallException(PluginFailureKind.Abi, "no plugin_free export");
        }
        catch
        {
            _store.Dispose();
            throw;
        }
    }

    public InstanceContext Context { get; }

    public Instance Instance => _instance;

    public PluginOutput Stdout { get; }

    public PluginOutput Stderr { get; }

    /// <summary>
    /// The ABI of spec §7.3 in one hop to the guest thread: alloc, copy in, call, unpack (ptr &lt;&lt; 32 | len), copy out,
    /// free the output, free the input. Returns null for a zero-length answer (and for void hooks). Fuel covers the whole
    /// sequence; <paramref name="timeout"/> or <paramref name="cancellationToken"/> interrupt it.
    /// </summary>
    public byte[]? Call(string hook, byte[] request, bool returnsValue, long fuel, TimeSpan timeout, CancellationToken cancellationToken)
    {
        var function = _instance.GetFunction(hook) ?? throw new PluginCallException(PluginFailureKind.Abi, $"no {hook} export");
        Context.Hook = hook;
        _store.SetFuel(fuel);
        _store.SetEpochDeadline(long.MaxValue);
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(timeout);
        using var interrupt = deadline.Token.UnsafeRegister(static s => ((Store)s!).Interrupt(), _store);
        try
        {
            return _store.Run(() => Invoke(function, request, returnsValue));
        }
        finally
        {
            Context.Hook = null;
        }
    }

    private byte[]? Invoke(Function function, byte[] request, bool returnsValue)
    {
        var inLen = request.Length;
        var inPtr = _alloc.Call(Value.I32(inLen))[0].AsI32;
        if (inPtr == 0)
        {
            throw new PluginCallException(PluginFailureKind.Abi, "plugin_alloc returned 0");
        }

        if ((uint)inPtr + (long)inLen > _memory.Length)
        {
            throw new PluginCallException(PluginFailureKind.Abi, $"plugin_alloc returned {(uint)inPtr}, beyond memory for {inLen} bytes");
        }

        request.CopyTo(_memory.GetSpan(inPtr, inLen));
        var results = function.Call(Value.I32(inPtr), Value.I32(inLen));
        byte[]? response = null;
        if (returnsValue)
        {
            if (results.Length != 1 || results[0].Kind != ValueKind.I64)
            {
                throw new PluginCallException(
                    PluginFailureKind.Abi,
                    results.Length == 0 ? "returned nil, expected i64" : $"returned {results[0].Kind}, expected i64");
            }

            var packed = (ulong)results[0].AsI64;
            var outPtr = (uint)(packed >> 32);
            var outLen = (uint)packed;
            if (outLen > 0)
            {
                if (outPtr + (long)outLen > _memory.Length)
                {
                    throw new PluginCallException(PluginFailureKind.Abi, $"response {outPtr}+{outLen} is beyond memory ({_memory.Length} bytes)");
                }

                response = _memory.GetSpan((int)outPtr, (int)outLen).ToArray();
                _free.Call(Value.I32((int)outPtr), Value.I32((int)outLen));
            }
            else
            {
                response = [];
            }
        }

        _free.Call(Value.I32(inPtr), Value.I32(inLen));
        return response is { Length: 0 } ? null : response;
    }

    public void Dispose() => _store.Dispose();

    /// <summary>What host imports see through <see cref="Caller.Data"/>: which plugin calls, from which hook.</summary>
    internal sealed class InstanceContext(LoadedPlugin plugin)
    {
        public LoadedPlugin Plugin { get; } = plugin;

        public string? Hook { get; set; }
    }
}
