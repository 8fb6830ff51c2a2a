using System.Diagnostics;
using System.Globalization;
using Propeller.Plugins.Hosting;
using Propeller.WasmHost;
using Propeller.WasmHost.Components;
using Wasmtime;
using Wasmtime.Components;

namespace Propeller.Plugins.Proplet;

/// <summary>
/// A proplet plugin as the original writes them (spec propeller-edge.md §5): a component of WIT package
/// <c>propeller:proplet-plugin@0.1.0</c> exporting interface <c>lifecycle</c> (authorize, enrich, on-task-start,
/// on-task-complete), with WASI preview 2 linked and an empty WASI context. Beyond the original, each call runs in a
/// fresh store under the plugin limits (fuel, memory, wall clock), so a plugin that traps or spins fails that call
/// only; the price is that no state survives between calls (the original kept one instance for the process).
/// </summary>
public sealed class ComponentPlugin
{
    public const string Lifecycle = "propeller:proplet-plugin/lifecycle@0.1.0";

    private const string TaskInfo = "record {id: string, name: string, image-url: string, cli-args: list<string>, env: list<tuple<string, string>>, daemon: bool, encrypted: bool}";
    private const string TaskResult = "record {task-id: string, success: bool, output: option<string>, error: option<string>}";

    /// <summary>The lifecycle functions' parameter and result types (WIT, as <see cref="WitType"/> prints them; no result: null).</summary>
    private static readonly Dictionary<string, (string[] Parameters, string? Result)> Signatures = new(StringComparer.Ordinal)
    {
        ["authorize"] = ([TaskInfo], "record {allow: bool, reason: option<string>}"),
        ["enrich"] = ([TaskInfo], "record {env: list<tuple<string, string>>}"),
        ["on-task-start"] = ([TaskInfo], null),
        ["on-task-complete"] = ([TaskResult], null),
    };

    /// <summary>How many calls of a plugin may be left blocked in a host call past their time limit (each holds a
    /// thread until the host call returns): beyond it, its calls fail at once.</summary>
    public const int MaxBlocked = 4;

    /// <summary>How long past its time limit a call is waited for before it is given up (the epoch check ends one that
    /// runs guest code within a tick: only one blocked in a host call is still going then).</summary>
    private static readonly TimeSpan GiveUpGrace = TimeSpan.FromMilliseconds(500);

    private readonly CompiledComponent _component;
    private readonly ComponentLinker _linker;
    private readonly WasmEngine _engine;
    private readonly PluginLimits _limits;

    private ComponentPlugin(string name, CompiledComponent component, ComponentLinker linker, WasmEngine engine, PluginLimits limits)
    {
        Name = name;
        _component = component;
        _linker = linker;
        _engine = engine;
        _limits = limits;
    }

    public string Name { get; }

    /// <summary>Compiles <paramref name="file"/>; throws <see cref="Runtime.PluginLoadException"/> when it is not a lifecycle plugin.</summary>
    public static ComponentPlugin Load(string file, ModuleCache cache, ComponentLinker linker, PluginLimits limits)
    {
        ArgumentNullException.ThrowIfNull(cache);
        var name = Path.GetFileNameWithoutExtension(file);
        CompiledComponent component;
        try
        {
            component = cache.GetOrCompileComponent(File.ReadAllBytes(file));
        }
        catch (Exception e) when (e is WasmtimeException or IOException or UnauthorizedAccessException)
        {
            throw new Runtime.PluginLoadException($"not a loadable component: {(e is WasmtimeException w ? WasmErrors.Reason(w) : e.Message)}", e);
        }

        if (!component.Functions.Any(f => f.Interface == Lifecycle))
        {
            throw new Runtime.PluginLoadException($"the component does not export {Lifecycle}");
        }

        // Checked here, as the original's bindings check them at instantiation: a function of another type would fail
        // every call in the decoding of its result (not a plugin error), refusing tasks instead of skipping the plugin.
        foreach (var function in component.Functions.Where(f => f.Interface == Lifecycle))
        {
            if (Signatures.TryGetValue(function.Name, out var expected)
                && (!function.Parameters.Select(p => p.Type?.ToString()).SequenceEqual(expected.Parameters) || function.Result?.ToString() != expected.Result))
            {
                throw new Runtime.PluginLoadException(
                    $"{Lifecycle}#{function.Name} has type ({string.Join(", ", function.Parameters.Select(p => p.Type))}) -> {function.Result?.ToString() ?? "()"}, expected ({string.Join(", ", expected.Parameters)}) -> {expected.Result ?? "()"}");
            }
        }

        return new ComponentPlugin(name, component, linker, cache.Engine, limits);
    }

    public bool Has(string function) => _component.Find($"{Lifecycle}#{function}") is not null;

    private int _blocked;
    private int _abandoned;

    /// <summary>Calls given up (<see cref="CallAsync"/>) still blocked in a host call: timed out, or cancelled and still
    /// running past the grace. They count towards <see cref="MaxBlocked"/>.</summary>
    public int Blocked => Volatile.Read(ref _blocked);

    /// <summary>Calls given up (timed out or cancelled) that have not ended yet, blocked or about to end: their store and
    /// the linker are in use until they do.</summary>
    public int Abandoned => Volatile.Read(ref _abandoned);

    /// <summary>
    /// <see cref="Call"/>, waited for until its time limit or <paramref name="cancellationToken"/>. The limits end guest
    /// code at an epoch tick, but not a host call: WASI preview 2's <c>pollable.block</c> (a sleep) is Wasmtime's and
    /// cannot be interrupted, so a plugin sleeping past its limit held the admission (and a stop of the task) for the
    /// whole sleep. Such a call is given up: the time limit fails it as any other (<see cref="ComponentPluginException"/>),
    /// a stop cancels it (<see cref="OperationCanceledException"/>), and it ends in the background when its host call
    /// returns, its store disposed then. At most <see cref="MaxBlocked"/> blocked calls per plugin; past them its calls
    /// fail at once. A call that timed out counts as blocked; a cancelled one only when it is still running
    /// <see cref="GiveUpGrace"/> after the cancellation (the epoch check ends one running guest code within a tick): before,
    /// every cancelled call counted, so four task stops during authorize calls made the next calls fail at once.
    /// </summary>
    public async Task<ComponentValue?> CallAsync(string function, ComponentValue argument, CancellationToken cancellationToken)
    {
        if (Blocked >= MaxBlocked)
        {
            throw new ComponentPluginException($"{Name} {function}: {MaxBlocked} earlier calls are still blocked past the time limit");
        }

        var call = Task.Run(() => Call(function, argument, cancellationToken), CancellationToken.None);
        try
        {
            return await call.WaitAsync(_limits.Timeout + GiveUpGrace, cancellationToken);
        }
        catch (TimeoutException e)
        {
            Abandon(call, blocked: true);
            throw new ComponentPluginException($"{Name} {function}: {TimeLimitExceeded}", e);
        }
        catch (OperationCanceledException)
        {
            Abandon(call, blocked: false);
            throw;
        }
    }

    /// <summary>
    /// Counts a call given up until it ends (its failure is observed: it was answered already). A blocked one counts
    /// towards <see cref="MaxBlocked"/> at once; a cancelled one from when it is still running <see cref="GiveUpGrace"/>
    /// later, without holding up the cancellation.
    /// </summary>
    private void Abandon(Task call, bool blocked)
    {
        Interlocked.Increment(ref _abandoned);
        if (blocked)
        {
            Interlocked.Increment(ref _blocked);
        }

        _ = WatchAsync();

        async Task WatchAsync()
        {
            var counted = blocked;
            if (!counted)
            {
                try
                {
                    await call.WaitAsync(GiveUpGrace).ConfigureAwait(false);
                }
                catch (TimeoutException)
                {
                    Interlocked.Increment(ref _blocked); // still running past the grace: blocked in a host call
                    counted = true;
                }
#pragma warning disable CA1031 // The call's own failure: answered already (the caller was cancelled).
                catch (Exception)
#pragma warning restore CA1031
                {
                }
            }

            try
            {
                await call.ConfigureAwait(false);
            }
#pragma warning disable CA1031 // The call's own failure: answered already.
            catch (Exception)
#pragma warning restore CA1031
            {
            }

            if (counted)
            {
                Interlocked.Decrement(ref _blocked);
            }

            Interlocked.Decrement(ref _abandoned);
        }
    }

    private string TimeLimitExceeded => string.Create(CultureInfo.InvariantCulture, $"time limit of {_limits.Timeout.TotalSeconds:0.###} s exceeded");

    /// <summary>Calls <paramref name="function"/> in a fresh instance; a trap, the fuel, memory or time limit throws <see cref="ComponentPluginException"/>.</summary>
    public ComponentValue? Call(string function, ComponentValue argument, CancellationToken cancellationToken)
    {
        using var store = new Store(_engine.Engine);
        store.SetWasiConfiguration(new WasiConfiguration());
        store.Fuel = (ulong)_limits.Fuel;
        MemoryLimits.Cap(store, (long)_limits.MemoryMb << 20);
        var deadline = Stopwatch.GetTimestamp() + (long)(_limits.Timeout.TotalSeconds * Stopwatch.Frequency);
        using var ticking = _engine.Watch(store, () =>
        {
            if (cancellationToken.IsCancellationRequested || Stopwatch.GetTimestamp() > deadline)
            {
                throw new TimeoutException(TimeLimitExceeded);
            }
        });
        try
        {
            var instance = _linker.Instantiate(store, _component.Component);
            return instance.GetFunction(Lifecycle, function)!.Call(argument);
        }
        catch (WasmtimeException e)
        {
            var reason = e switch
            {
                { InnerException: TimeoutException timeout } => timeout.Message,
                _ when WasmErrors.OutOfFuel(e) => $"fuel limit of {_limits.Fuel} exhausted",
                TrapException trap => WasmErrors.Trap(trap),
                _ => WasmErrors.Reason(e),
            };
            throw new ComponentPluginException($"{Name} {function}: {reason}", e);
        }
    }
}
