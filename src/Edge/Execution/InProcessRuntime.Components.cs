using Propeller.Edge.Tasks;
using Propeller.WasmHost;
using Propeller.WasmHost.Components;
using Wasmtime;
using Wasmtime.Components;

namespace Propeller.Edge.Execution;

/// <summary>
/// Components (spec §2.3, §2.5, §2.6, §2.10; ADR 0011): WASI preview 2 linked, the same env, preopens and limits as core
/// modules. A task named by a custom export calls it with its inputs parsed as WAVE and returns the first result as WAVE;
/// otherwise the component is a command and <c>wasi:cli/run</c> runs with stdout and stderr captured.
/// </summary>
public sealed partial class InProcessRuntime
{
    /// <summary>The original's test for a task that names a custom export (spec §2.3).</summary>
    internal static bool HasCustomExport(string name) =>
        name.Length > 0 && name != "_start" && !name.StartsWith("fl-round-", StringComparison.Ordinal);

    public LatentPreparation Prepare(RunningTask task, byte[] binary)
    {
        ArgumentNullException.ThrowIfNull(task);
        ArgumentNullException.ThrowIfNull(binary);
        if (!WasmBinary.IsComponent(binary))
        {
            return LatentPreparation.Failed($"latent tasks require a WASM component; task {task.Id} is not a component");
        }

        if (Compile(binary, out var component) is { } error)
        {
            return LatentPreparation.Failed(error);
        }

        // A latent proxy would be kept with no listener; it is refused as a start is (ADR 0011).
        return component!.IsHttpProxy
            ? LatentPreparation.Failed(HttpProxyRefusal())
            : new LatentPreparation(component, false, null);
    }

    public Task<TaskOutcome> InvokeAsync(RunningTask invocation, object prepared, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(invocation);
        var component = (CompiledComponent)prepared;
        return WaitAsync(invocation, GuestThreads.RunAsync(() => RunComponent(invocation, component)));
    }

    private TaskOutcome RunComponent(RunningTask task, byte[] binary) =>
        Compile(binary, out var component) is { } error ? TaskOutcome.Failure(error) : RunComponent(task, component!);

    private string? Compile(byte[] binary, out CompiledComponent? component)
    {
        try
        {
            component = _modules.GetOrCompileComponent(binary);
            return null;
        }
        catch (WasmtimeException ex)
        {
            component = null;
            return $"Failed to compile WASM component from binary: {WasmErrors.Reason(ex)}";
        }
    }

    private TaskOutcome RunComponent(RunningTask task, CompiledComponent component)
    {
        if (component.IsHttpProxy)
        {
            return TaskOutcome.Failure(HttpProxyRefusal());
        }

        return HasCustomExport(task.Request.Name) ? CallExport(task, component) : RunCliCommand(task, component);
    }

    /// <summary>
    /// The answer to an HTTP proxy component that is not served (spec §2.11): the original's text while
    /// PROPLET_HTTP_ENABLED is off; with it on, a latent deployment, which would keep a proxy with no listener (a start
    /// serves it, ADR 0015).
    /// </summary>
    private string HttpProxyRefusal() => _settings.HttpEnabled
        ? "HTTP proxy components are served by a normal start (they answer \"started at port N\"), not deployed as latent tasks"
        : "HTTP proxy is disabled. Enable it by setting http_enabled=true in configuration";

    private TaskOutcome CallExport(RunningTask task, CompiledComponent component)
    {
        var request = task.Request;
        var name = request.Name;
        if (component.Find(name) is not { } function)
        {
            return TaskOutcome.Failure($"Export '{name}' not found in component for task {request.Id}");
        }

        if (request.Inputs.Count != function.Parameters.Count)
        {
            return TaskOutcome.Failure($"Argument count mismatch for '{name}': expected {function.Parameters.Count} but got {request.Inputs.Count}");
        }

        // Its result could not come back as WAVE text (spec §2.5): refused before the guest runs. Called, a resource
        // result made Wasmtime's .NET wrapper throw NotSupportedException (it cannot lift one; Wave.Write has no text
        // for it either), which reached the task runner as an internal proplet error after the guest had run.
        if (function.Result is { } resultType && !Wave.CanWrite(resultType))
        {
            return TaskOutcome.Failure(NoWaveText(name, resultType));
        }

        var arguments = new ComponentValue[function.Parameters.Count];
        for (var i = 0; i < arguments.Length; i++)
        {
            try
            {
                arguments[i] = Wave.Parse(request.Inputs[i], function.Parameters[i].Type!);
            }
            catch (WaveException ex)
            {
                return TaskOutcome.Failure($"Failed to parse WAVE argument '{request.Inputs[i]}' for export '{name}': {ex.Message}");
            }
        }

        // Guest output is not part of an export's result (the original inherits the proplet's stdio, spec §2.5).
        var (store, ticking, instance, failure) = Instantiate(task, component, new BoundedCapture(_settings.OutputLimit), new BoundedCapture(_settings.OutputLimit), "WASM component");
        using var owned = store;
        using var held = ticking;
        if (failure is not null)
        {
            return failure;
        }

        var callable = function.Interface is null ? instance!.GetFunction(function.Name) : instance!.GetFunction(function.Interface, function.Name);
        ComponentValue? result;
        try
        {
            result = callable!.Call(arguments);
        }
        catch (WasmtimeException ex)
        {
            return Stopped(task) ?? TaskOutcome.Failure($"Failed to call export '{name}' on component: {Describe(ex, Limits(task), null)}");
        }

        // The text is bounded as a program's stdout is (PROPLET_TASK_OUTPUT_LIMIT), or by the packet size the proplet
        // takes when that is larger: its size is the guest's choice, and a result longer than any packet the broker
        // takes could not be published anyway.
        var limit = Math.Max(_settings.OutputLimit, _settings.MaxPacketSize);
        try
        {
            return TaskOutcome.Success(result is null ? "" : Wave.Write(result, limit));
        }
        catch (WaveException ex)
        {
            return TaskOutcome.Failure($"The result of export '{name}' cannot be sent: {ex.Message} (PROPLET_TASK_OUTPUT_LIMIT, PROPLET_MQTT_MAX_PACKET_SIZE)");
        }
    }

    private static string NoWaveText(string name, WitType result) =>
        $"Export '{name}' returns {result}, which has no WAVE text (a resource, future, stream or error-context cannot be a task's result)";

    /// <summary>A store with the task's WASI context and limits, and the component instantiated in it; or why it could not
    /// be. The caller disposes the store and its epoch lease (<see cref="NewStore"/>).</summary>
    private (Store Store, EpochLease Ticking, ComponentInstance? Instance, TaskOutcome? Failure) Instantiate(
        RunningTask task, CompiledComponent component, BoundedCapture stdout, BoundedCapture stderr, string what)
    {
        var store = NewStore(task, skip => Wasi(task.Request, [], stdout, stderr, skip), out var ticking);
        try
        {
            return (store, ticking, _componentLinker.Instantiate(store, component.Component), null);
        }
        catch (WasmtimeException ex)
        {
            return (store, ticking, null, Stopped(task) ?? TaskOutcome.Failure($"Failed to instantiate {what}: {Describe(ex, Limits(task), null)}"));
        }
        catch
        {
            // Anything else goes up to the runner's catch; the store and its epoch lease are not left to the finalizer.
            ticking.Dispose();
            store.Dispose();
            throw;
        }
    }

    private TaskOutcome RunCliCommand(RunningTask task, CompiledComponent component)
    {
        var request = task.Request;
        var run = component.Functions.FirstOrDefault(f => f.Name == "run" && f.Interface?.StartsWith("wasi:cli/run@", StringComparison.Ordinal) == true);
        if (run is null)
        {
            return TaskOutcome.Failure("Failed to instantiate WASM command component: the component does not export wasi:cli/run");
        }

        var stdout = new BoundedCapture(_settings.OutputLimit);
        var stderr = new BoundedCapture(_settings.OutputLimit);
        var (store, ticking, instance, failure) = Instantiate(task, component, stdout, stderr, "WASM command component");
        using var owned = store;
        using var held = ticking;
        if (failure is not null)
        {
            return failure;
        }

        bool ok;
        try
        {
            ok = instance!.GetFunction(run.Interface!, run.Name)!.Call() is not { Kind: ComponentValueKind.Result, IsOk: false };
        }
        catch (WasmtimeException exit) when (exit.ExitCode is { } code)
        {
            // wasi:cli/exit: exit(ok) is success, exit(err) the run's err.
            ok = code == 0;
        }
        catch (WasmtimeException ex)
        {
            return Stopped(task) ?? TaskOutcome.Failure($"Failed to call wasi:cli/run on component: {Describe(ex, Limits(task), null)}");
        }

        if (stdout.Truncated || stderr.Truncated)
        {
            EdgeLog.OutputTruncated(_logger, task.Id, Math.Max(stdout.Total, stderr.Total), _settings.OutputLimit);
        }

        if (!ok)
        {
            return TaskOutcome.Failure($"Component for task {request.Id} exited with error");
        }

        var errors = stderr.ToString();
        var output = stdout.ToString();
        return TaskOutcome.Success(errors.Length > 0 ? output + "\n" + errors : output);
    }
}
