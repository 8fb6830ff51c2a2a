using System.Globalization;
using Microsoft.Extensions.Logging;
using Propeller.Edge.Configuration;
using Propeller.Edge.Tasks;
using Propeller.WasmHost;
using Propeller.WasmHost.Components;
using Wasmtime;
using Wasmtime.Components;

namespace Propeller.Edge.Execution;

/// <summary>
/// Runs core modules on Wasmtime (spec §2.4, with the quirks fixed that docs/edge.md lists; ADR 0007): WASI preview1
/// with the task env plus PROPLET_ID and the PROPLET_DIRS preopens; <c>_initialize</c> first when exported; the export
/// named by the task (else main, run, _start). A <c>_start</c> program gets the inputs as argv and its stdout is the
/// result; any other function gets the inputs parsed by parameter type and returns its first result as text. Fuel,
/// memory and time limits apply per task, and a stop ends the guest at the next epoch tick.
/// </summary>
public sealed partial class InProcessRuntime : IWasmRuntime, IDisposable
{
    private static readonly string[] Fallbacks = ["main", "run", "_start"];

    /// <summary>How long an ended task's guest gets to stop by itself (ten epoch ticks) before the stop is reported.</summary>
    private static readonly TimeSpan StopGrace = WasmEngine.EpochTick * 10;

    private readonly PropletSettings _settings;
    private readonly ILogger<InProcessRuntime> _logger;
    private readonly WasmEngine _engine;
    private readonly ModuleCache _modules;
    private readonly Linker _linker;
    private readonly ComponentLinker _componentLinker;

    public InProcessRuntime(PropletSettings settings, ILogger<InProcessRuntime> logger)
    {
        ArgumentNullException.ThrowIfNull(settings);
        _settings = settings;
        _logger = logger;

        // One engine per process, shared with the proplet's plugins, on the pooling allocator sized from the settings
        // (ADR 0011); compiled modules are cached by SHA-256 (and on disk under PROPLET_WASM_CACHE_DIR), so a repeated
        // task never compiles again.
        var pool = SharedPool(settings);
        var configured = WasmEngine.ConfigureShared(pool);
        _engine = WasmEngine.Shared;
        if (configured)
        {
            EdgeLog.EngineAllocator(logger, _engine.Allocator);
        }
        else
        {
            EdgeLog.EngineAlreadyPooled(logger, _engine.Allocator);
        }

        _modules = new ModuleCache(_engine, settings.WasmCacheDir);
        _linker = new Linker(_engine.Engine);
        _linker.DefineWasi();

        // A sleep in poll_oneoff ends when the task does (the store's data is its TaskWait), not only when it is due:
        // the epoch check never runs in a host call, and a stopped guest asleep there kept its store, pool slot and
        // epoch lease for as long as it slept.
        WasiPoll.Shadow(_linker);
        _componentLinker = new ComponentLinker(_engine.Engine);
        _componentLinker.AddWasiPreview2();
    }

    public string Name => "wasmtime-internal";

    /// <summary>
    /// The pool for <paramref name="settings"/>: PROPLET_WASM_POOL_INSTANCES slots (0: none); memory slots as large as the
    /// largest cap a guest of this proplet has by default: PROPLET_TASK_MAX_MEMORY_MIB or the plugin caps, and the wasm32
    /// maximum when tasks are uncapped. A task's <c>--max-memory</c> above the slot gets the slot.
    /// </summary>
    internal static WasmPool? SharedPool(PropletSettings settings) =>
        settings.WasmPoolInstances == 0
            ? null
            : WasmPool.For(
                settings.WasmPoolInstances,
                settings.TaskMaxMemoryMib is { } mib
                    ? Math.Max(mib, Math.Max(Plugins.Hosting.PluginLimits.Default.MemoryMb, Plugins.Hosting.PluginLimits.Default.JobMemoryMb))
                    : null);

    public Task<TaskOutcome> RunAsync(RunningTask task, byte[] binary, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(task);
        ArgumentNullException.ThrowIfNull(binary);

        if (ServesHttpProxy(binary))
        {
            return ServeHttpProxyAsync(task, binary);
        }

        // Compile, instantiate and call on a pooled guest thread; no other thread waits for it (GuestThreads).
        return WaitAsync(task, GuestThreads.RunAsync(() => Run(task, binary)));
    }

    /// <summary>The guest's own outcome, or the stop's when the task is ended and the guest does not stop in time
    /// (<see cref="WaitGuestAsync{T}"/>).</summary>
    private async Task<TaskOutcome> WaitAsync(RunningTask task, Task<TaskOutcome> run) =>
        await WaitGuestAsync(task, run) is (false, var outcome) ? outcome : Stopped(task)!;

    /// <summary>
    /// What <paramref name="guest"/> (work on a guest thread: a run, a served proxy's compile) returns; but when the task is
    /// ended and the guest does not stop within <see cref="StopGrace"/>, Ended at once (<paramref name="abandoned"/> then
    /// gets the value when it comes). Epoch interruption reaches guest code only; a WASI preview1 <c>poll_oneoff</c> sleep
    /// is ours (<see cref="WasiPoll"/>) and ends with the task, but a guest blocked in another host call (a preview 2
    /// <c>wasi:io/poll</c> wait), or a compile, ends when that call returns, on its guest thread, after the task's result is
    /// out. The task knows of that thread (<see cref="RunningTask.GuestReturned"/>): its slot is not freed before it returns.
    /// </summary>
    private async Task<(bool Ended, T Value)> WaitGuestAsync<T>(RunningTask task, Task<T> guest, Action<T>? abandoned = null)
    {
        task.RunsGuest(guest);
        try
        {
            return (false, await guest.WaitAsync(task.Aborted));
        }
        catch (OperationCanceledException) when (task.Reason != StopReason.None)
        {
            try
            {
                return (false, await guest.WaitAsync(StopGrace, CancellationToken.None));
            }
            catch (TimeoutException)
            {
                EdgeLog.GuestInHostCall(_logger, task.Id);
                if (abandoned is not null)
                {
                    _ = guest.ContinueWith(
                        returned => abandoned(returned.Result), CancellationToken.None, TaskContinuationOptions.OnlyOnRanToCompletion | TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
                }

                return (true, default!);
            }
        }
    }

    public void Dispose()
    {
        _linker.Dispose();
        _componentLinker.Dispose();
    }

    private TaskOutcome Run(RunningTask task, byte[] binary)
    {
        if (WasmBinary.IsComponent(binary))
        {
            return RunComponent(task, binary);
        }

        var request = task.Request;
        Module module;
        try
        {
            module = _modules.GetOrCompile(request.Id, binary, task.BinarySha256);
        }
        catch (WasmtimeException ex)
        {
            return TaskOutcome.Failure($"Failed to compile wasm module from binary: {WasmErrors.Reason(ex)}");
        }

        var choice = ChooseExport(module, request.Name);
        if (choice.Error is { } notFound)
        {
            return TaskOutcome.Failure(notFound);
        }

        var isCommand = choice.Name == "_start";
        var stdout = new BoundedCapture(_settings.OutputLimit);
        var stderr = new BoundedCapture(_settings.OutputLimit);
        using var store = NewStore(task, skip => Wasi(request, isCommand ? request.Inputs : [], stdout, stderr, skip), out var ticking);
        using var held = ticking;

        Instance instance;
        try
        {
            instance = _linker.Instantiate(store, module);
        }
        catch (WasmtimeException ex) when (ex.ExitCode == 0)
        {
            return ExitedEarly(task, isCommand, stdout); // proc_exit(0) in the start function
        }
        catch (WasmtimeException ex)
        {
            return Stopped(task) ?? TaskOutcome.Failure($"Failed to instantiate wasm module: {Describe(ex, Limits(task), null)}");
        }

        if (choice.Name != "_initialize" && instance.GetFunction("_initialize") is { } initialize)
        {
            try
            {
                initialize.Invoke();
            }
            catch (WasmtimeException ex) when (ex.ExitCode == 0)
            {
                return ExitedEarly(task, isCommand, stdout);
            }
            catch (WasmtimeException ex)
            {
                return Stopped(task) ?? TaskOutcome.Failure($"Failed to initialize the module via _initialize: {Describe(ex, Limits(task), instance)}");
            }
        }

        var function = instance.GetFunction(choice.Name!)!;
        return isCommand
            ? RunCommand(task, function, instance, stdout, stderr)
            : CallFunction(task, choice.Name!, function, instance);
    }

    /// <summary>
    /// The outcome of a program that called <c>proc_exit(0)</c> before its export ran (in its start function or in
    /// <c>_initialize</c>): it ended successfully, as under the Wasmtime CLI, whose process exits 0 there without calling
    /// the export. The export is not called: the exit unwound the initialization half-way, and WASI ends the program at
    /// <c>proc_exit</c>. A command's result is the stdout it wrote; a function's is empty, as after an exit in the call.
    /// </summary>
    private TaskOutcome ExitedEarly(RunningTask task, bool isCommand, BoundedCapture stdout)
    {
        if (!isCommand)
        {
            return TaskOutcome.Success("");
        }

        if (stdout.Truncated)
        {
            EdgeLog.OutputTruncated(_logger, task.Id, stdout.Total, _settings.OutputLimit);
        }

        return TaskOutcome.Success(stdout.ToString());
    }

    /// <summary>A store for one run of <paramref name="task"/>: its WASI context (none for an HTTP proxy, whose host
    /// defines its own), fuel and memory limits, and the epoch check that ends the guest when the task is stopped, times
    /// out or the proplet shuts down (or <paramref name="check"/>'s own). <paramref name="ticking"/> keeps the epoch
    /// ticking: the caller disposes it with the store.</summary>
    private Store NewStore(RunningTask task, Func<IReadOnlySet<string>, WasiConfiguration>? wasi, out EpochLease ticking, Action? check = null)
    {
        var limits = task.Request.Limits;
        var store = new Store(_engine.Engine, new TaskWait(task));
        try
        {
            if (wasi is not null)
            {
                SetWasi(store, task, wasi);
            }

            store.Fuel = (ulong)(limits.Fuel ?? long.MaxValue);
            if (Limits(task).MaxMemoryMib is { } mib)
            {
                MemoryLimits.Cap(store, mib << 20); // the task's total: one linear memory (docs/edge.md)
            }

            // A stop, a timeout or shutdown sets the task's reason; the guest sees it at the next epoch tick.
            ticking = _engine.Watch(store, check ?? (() =>
            {
                if (task.Reason != StopReason.None)
                {
                    throw new OperationCanceledException($"task {task.Id} ended: {task.Reason}");
                }
            }));
        }
        catch
        {
            store.Dispose(); // nobody else has it yet
            throw;
        }

        return store;
    }

    /// <summary>
    /// Sets <paramref name="store"/>'s WASI context (<paramref name="wasi"/>, built without the given PROPLET_DIRS
    /// entries). Wasmtime opens each preopen here; one it cannot open although <see cref="Directory.Exists"/> said it
    /// is there (a path it resolves otherwise, such as <c>/srv/missing/..</c>, which .NET shortens to <c>/srv</c>; a
    /// directory removed meanwhile; no descriptors left) failed the whole context, and every task with it ("internal
    /// proplet error"). Spec §2.4 skips a failing preopen: when the context fails, each entry is tried alone, and the
    /// context is built again without those that fail (logged). A failure that is not a preopen's fails again.
    /// </summary>
    private void SetWasi(Store store, RunningTask task, Func<IReadOnlySet<string>, WasiConfiguration> wasi)
    {
        try
        {
            store.SetWasiConfiguration(wasi(NoDirs));
            return;
        }
        catch (InvalidOperationException) when (_settings.Dirs.Count > 0)
        {
            // found below
        }

        var failing = new HashSet<string>(StringComparer.Ordinal);
        foreach (var dir in _settings.Dirs)
        {
            using var probe = new Store(_engine.Engine);
            try
            {
                probe.SetWasiConfiguration(new WasiConfiguration().WithPreopenedDirectory(dir, dir, mutable: true));
            }
            catch (InvalidOperationException ex)
            {
                failing.Add(dir);
                EdgeLog.PreopenUnopenable(_logger, dir, ex.Message, task.Id);
            }
        }

        store.SetWasiConfiguration(wasi(failing));
    }

    private static readonly HashSet<string> NoDirs = [];

    /// <summary>The task's WASI context, without the PROPLET_DIRS entries in <paramref name="skip"/>
    /// (<see cref="SetWasi"/>).</summary>
    private WasiConfiguration Wasi(StartRequest request, IReadOnlyList<string> args, BoundedCapture stdout, BoundedCapture stderr, IReadOnlySet<string> skip)
    {
        var wasi = new WasiConfiguration()
            .WithArgs([request.Name, .. args])
            .WithStandardOutputCallback(data => stdout.Append(data))
            .WithStandardErrorCallback(data => stderr.Append(data));
        foreach (var (key, value) in request.Env)
        {
            wasi.WithEnvironmentVariable(key, value);
        }

        if (!request.Env.ContainsKey("PROPLET_ID"))
        {
            wasi.WithEnvironmentVariable("PROPLET_ID", _settings.EntityId);
        }

        foreach (var dir in _settings.Dirs)
        {
            if (!Directory.Exists(dir))
            {
                EdgeLog.PreopenSkipped(_logger, dir, request.Id);
            }
            else if (!skip.Contains(dir))
            {
                wasi.WithPreopenedDirectory(dir, dir, mutable: true);
            }
        }

        return wasi;
    }

    private static TaskOutcome CallFunction(RunningTask task, string name, Function function, Instance instance)
    {
        var request = task.Request;
        var parameters = function.Parameters;
        if (request.Inputs.Count != parameters.Count)
        {
            return TaskOutcome.Failure(
                $"Argument count mismatch for function '{name}': expected {parameters.Count} arguments but got {request.Inputs.Count}");
        }

        var arguments = new ValueBox[parameters.Count];
        for (var i = 0; i < arguments.Length; i++)
        {
            if (!ValueText.TryParse(parameters[i], request.Inputs[i], out arguments[i], out var error))
            {
                return TaskOutcome.Failure(error);
            }
        }

        try
        {
            var result = function.Invoke(arguments);
            return TaskOutcome.Success(ValueText.Format(result is object[] many ? many[0] : result));
        }
        catch (WasmtimeException exit) when (exit.ExitCode is { } code)
        {
            // The original reported every proc_exit as a failure, even 0 (spec §2.4 step 7).
            return code == 0
                ? TaskOutcome.Success("")
                : TaskOutcome.Failure($"Failed to call function '{name}': Exited with i32 exit status {code}");
        }
        catch (WasmtimeException ex)
        {
            return Stopped(task) ?? TaskOutcome.Failure($"Failed to call function '{name}': {Describe(ex, Limits(task), instance)}");
        }
    }

    private TaskOutcome RunCommand(RunningTask task, Function start, Instance instance, BoundedCapture stdout, BoundedCapture stderr)
    {
        int exitCode;
        try
        {
            start.Invoke();
            exitCode = 0;
        }
        catch (WasmtimeException exit) when (exit.ExitCode is { } code)
        {
            exitCode = code;
        }
        catch (WasmtimeException ex)
        {
            return Stopped(task) ?? TaskOutcome.Failure($"Failed to call function '_start': {Describe(ex, Limits(task), instance)}");
        }

        if (stdout.Truncated)
        {
            EdgeLog.OutputTruncated(_logger, task.Id, stdout.Total, _settings.OutputLimit);
        }

        if (exitCode == 0)
        {
            return TaskOutcome.Success(stdout.ToString());
        }

        var err = stderr.ToString().TrimEnd();
        return TaskOutcome.Failure(
            $"Exited with i32 exit status {exitCode}{(err.Length > 0 ? ", stderr: " + err : "")}{MemoryNote(Limits(task), instance)}");
    }

    /// <summary>The task's limits as the engine applies them: a memory cap above the pool's slot is the slot.</summary>
    private static TaskLimits Limits(RunningTask task)
    {
        var limits = task.Request.Limits;
        return WasmEngine.Shared.Pool is { } pool && pool.Clamp(limits.MaxMemoryMib) != limits.MaxMemoryMib
            ? limits with { MaxMemoryMib = pool.Clamp(limits.MaxMemoryMib) }
            : limits;
    }

    /// <summary>The outcome of a task ended from outside, or null when it failed on its own.</summary>
    internal static TaskOutcome? Stopped(RunningTask task) => task.Reason switch
    {
        StopReason.Stopped => TaskOutcome.Failure($"Task {task.Id} was stopped before completion"),
        StopReason.TimedOut => TaskOutcome.Failure(
            $"Task {task.Id} exceeded its time limit of {task.Request.Limits.Timeout?.TotalSeconds ?? 0:0.###} s and was stopped"),
        StopReason.ShuttingDown => TaskOutcome.Failure($"Task {task.Id} was stopped because the proplet is shutting down"),
        _ => null,
    };

    /// <summary>
    /// A failure's text naming the limit that ended it. Wasmtime refuses a <c>memory.grow</c> past the memory limit by
    /// returning -1 (no trap), so when the guest then fails with its memory at the limit, the text says so.
    /// </summary>
    private static string Describe(WasmtimeException error, TaskLimits limits, Instance? instance)
    {
        if (error.ExitCode is { } code)
        {
            return string.Create(CultureInfo.InvariantCulture, $"Exited with i32 exit status {code}");
        }

        var text = WasmErrors.OutOfFuel(error)
            ? string.Create(CultureInfo.InvariantCulture, $"wasm trap: all fuel consumed (fuel limit {limits.Fuel})")
            : error is TrapException trap ? WasmErrors.Trap(trap) : WasmErrors.Reason(error);
        if (instance is null)
        {
            return limits.MaxMemoryMib is not { } mib ? text
                : text.Contains("exceeds memory limits", StringComparison.Ordinal) ? $"{text} (memory limit of {mib} MiB)"
                : text.Contains("resource limit exceeded", StringComparison.Ordinal)
                    ? string.Create(CultureInfo.InvariantCulture, $"{text} (memory limit of {mib} MiB: a capped task has one linear memory and at most {MemoryLimits.CappedTables} tables)")
                : text;
        }

        return text + MemoryNote(limits, instance);
    }

    /// <summary>
    /// " (memory limit of N MiB reached: U MiB in use)" when the guest's memory is within <see cref="MemoryLimits.Margin"/>
    /// of the limit, the sign that a <c>memory.grow</c> was refused (Wasmtime answers it with -1; ADR 0007).
    /// </summary>
    private static string MemoryNote(TaskLimits limits, Instance instance) =>
        limits.MaxMemoryMib is { } mib && instance.GetMemory("memory") is { } memory && MemoryLimits.Reached(memory, mib << 20)
            ? string.Create(CultureInfo.InvariantCulture, $" (memory limit of {mib} MiB reached: {memory.GetLength() / (double)(1 << 20):0.##} MiB in use)")
            : "";

    /// <summary>What a task's guest may wait for in a host call (<see cref="WasiPoll"/>): until the task is ended.</summary>
    private sealed class TaskWait(RunningTask task) : IWaitLimit
    {
        public long Deadline => long.MaxValue; // a time limit ends the task (TaskRunner), which cancels the token

        public CancellationToken Cancellation { get; } = task.Aborted;

        public void ThrowIfEnded(bool cut)
        {
            if (task.Reason != StopReason.None)
            {
                throw new OperationCanceledException($"task {task.Id} ended: {task.Reason}");
            }
        }
    }

    private static (string? Name, string? Error) ChooseExport(Module module, string name)
    {
        var functions = module.Exports.OfType<FunctionExport>().Select(e => e.Name).ToList();
        if (functions.Contains(name, StringComparer.Ordinal))
        {
            return (name, null);
        }

        foreach (var fallback in Fallbacks)
        {
            if (functions.Contains(fallback, StringComparer.Ordinal))
            {
                return (fallback, null);
            }
        }

        return (null,
            $"Function '{name}' not found, and fallbacks [\"main\", \"run\", \"_start\"] also not found in module exports. "
            + $"Available function exports: [{string.Join(", ", functions.Select(f => $"\"{f}\""))}]");
    }
}
