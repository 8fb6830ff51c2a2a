using System.Text;
using Microsoft.Extensions.Logging;
using Propeller.Edge.Configuration;
using Propeller.Edge.Tasks;
using Propeller.Wasm;
using Propeller.Wasm.Wasi;

namespace Propeller.Edge.Execution;

/// <summary>
/// Runs core modules with Propeller.Wasm (spec §2.4, with the quirks fixed that docs/edge.md lists): WASI preview1 with
/// the task env plus PROPLET_ID and the PROPLET_DIRS preopens; <c>_initialize</c> first when exported; the export named
/// by the task (else main, run, _start). A <c>_start</c> program gets the inputs as argv and its stdout is the result;
/// any other function gets the inputs parsed by parameter type and returns its first result as text. Fuel, memory and
/// time limits apply per task, and a stop interrupts the guest (epoch interrupt) instead of leaving it running.
/// </summary>
public sealed class InProcessRuntime(PropletSettings settings, ILogger<InProcessRuntime> logger) : IWasmRuntime, IDisposable
{
    private static readonly string[] Fallbacks = ["main", "run", "_start"];

    // One engine for every task: modules are compiled once per distinct binary (cached by SHA-256). Fuel metering and
    // epoch interruption are on so limits and stop work; a task without a fuel limit gets long.MaxValue.
    private readonly Engine _engine = new(new Config().WithConsumeFuel(true).WithEpochInterruption(true));

    public string Name => "propeller-wasm-internal";

    public Task<TaskOutcome> RunAsync(RunningTask task, byte[] binary, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(task);
        ArgumentNullException.ThrowIfNull(binary);
        // Everything (compile, link, instantiate, call) runs on a pooled guest thread and no other thread waits for it:
        // blocked pool threads starved the MQTT and timer work (a 30 ms p50 proplet hop), and a dedicated thread per
        // task cost a thread creation each.
        return RunOnGuestThreadAsync(task, binary);
    }

    private async Task<TaskOutcome> RunOnGuestThreadAsync(RunningTask task, byte[] binary)
    {
        using var store = new Store(_engine);
        return await store.RunAsync(() => Run(task, binary, store));
    }

    public void Dispose() => _engine.Dispose();

    private TaskOutcome Run(RunningTask task, byte[] binary, Store store)
    {
        var request = task.Request;
        Module module;
        try
        {
            module = Module.FromBytes(_engine, request.Id, binary);
        }
        catch (ModuleException ex)
        {
            return TaskOutcome.Failure($"Failed to compile wasm module from binary: {ex.Message}");
        }

        var stdout = new WasiOutputBuffer(settings.OutputLimit);
        var stderr = new WasiOutputBuffer(settings.OutputLimit);
        var choice = ChooseExport(module, request.Name);
        if (choice.Error is { } notFound)
        {
            return TaskOutcome.Failure(notFound);
        }

        var isCommand = choice.Name == "_start";
        var wasi = new WasiConfiguration()
            .WithArgs([request.Name, .. isCommand ? request.Inputs : []])
            .WithStandardInput([])
            .WithStandardOutput(stdout)
            .WithStandardError(stderr);
        foreach (var (key, value) in request.Env)
        {
            wasi.WithEnvironmentVariable(key, value);
        }

        if (!request.Env.ContainsKey("PROPLET_ID"))
        {
            wasi.WithEnvironmentVariable("PROPLET_ID", settings.EntityId);
        }

        foreach (var dir in settings.Dirs)
        {
            if (Directory.Exists(dir))
            {
                wasi.WithPreopenedDirectory(dir, dir);
            }
            else
            {
                EdgeLog.PreopenSkipped(logger, dir, request.Id);
            }
        }

        store.SetFuel(request.Limits.Fuel ?? long.MaxValue);
        if (request.Limits.MaxMemoryMib is { } mib)
        {
            store.SetLimits(new StoreLimits { MemorySize = mib << 20 });
        }

        task.Attach(store);
        try
        {
            var context = new WasiContext(wasi);
            var linker = new Linker(_engine);
            context.DefineIn(linker);
            Instance instance;
            try
            {
                instance = linker.Instantiate(store, module);
            }
            catch (Exception ex) when (ex is LinkException or WasmException and not TrapException)
            {
                return TaskOutcome.Failure($"Failed to instantiate wasm module: {ex.Message}");
            }

            if (instance.GetFunction("_initialize") is { } initialize && choice.Name != "_initialize")
            {
                try
                {
                    store.Run(() => initialize.Call());
                }
                catch (TrapException trap)
                {
                    return Stopped(task) ?? TaskOutcome.Failure($"Failed to initialize the module via _initialize: {trap.Message}");
                }
            }

            var function = instance.GetFunction(choice.Name!)!;
            if (isCommand)
            {
                return RunCommand(task, context, instance, stdout, stderr);
            }

            var parameters = function.Type.Parameters;
            if (request.Inputs.Count != parameters.Count)
            {
                return TaskOutcome.Failure(
                    $"Argument count mismatch for function '{choice.Name}': expected {parameters.Count} arguments but got {request.Inputs.Count}");
            }

            var arguments = new Value[parameters.Count];
            for (var i = 0; i < arguments.Length; i++)
            {
                if (!ValueText.TryParse(parameters[i], request.Inputs[i], out arguments[i], out var error))
                {
                    return TaskOutcome.Failure(error);
                }
            }

            try
            {
                var results = store.Run(() => function.Call(arguments));
                return TaskOutcome.Success(results.Length > 0 ? ValueText.Format(results[0]) : "");
            }
            catch (WasiExitException exit)
            {
                // The original reported every proc_exit as a failure, even 0 (spec §2.4 step 7).
                return exit.ExitCode == 0
                    ? TaskOutcome.Success("")
                    : TaskOutcome.Failure($"Failed to call function '{choice.Name}': Exited with i32 exit status {exit.ExitCode}");
            }
            catch (TrapException trap)
            {
                return Stopped(task) ?? TaskOutcome.Failure($"Failed to call function '{choice.Name}': {Describe(trap)}");
            }
        }
        finally
        {
            task.Attach((Store?)null);
        }
    }

    private TaskOutcome RunCommand(RunningTask task, WasiContext context, Instance instance, WasiOutputBuffer stdout, WasiOutputBuffer stderr)
    {
        int exitCode;
        try
        {
            exitCode = instance.Store.Run(() => context.RunStart(instance));
        }
        catch (TrapException trap)
        {
            return Stopped(task) ?? TaskOutcome.Failure($"Failed to call function '_start': {Describe(trap)}");
        }

        if (stdout.Truncated)
        {
            EdgeLog.OutputTruncated(logger, task.Id, stdout.TotalWritten, settings.OutputLimit);
        }

        if (exitCode == 0)
        {
            return TaskOutcome.Success(Encoding.UTF8.GetString(stdout.ToArray()));
        }

        var err = Encoding.UTF8.GetString(stderr.ToArray()).TrimEnd();
        return TaskOutcome.Failure($"Exited with i32 exit status {exitCode}{(err.Length > 0 ? ", stderr: " + err : "")}");
    }

    /// <summary>The outcome of a task ended from outside, or null when it trapped on its own.</summary>
    internal static TaskOutcome? Stopped(RunningTask task) => task.Reason switch
    {
        StopReason.Stopped => TaskOutcome.Failure($"Task {task.Id} was stopped before completion"),
        StopReason.TimedOut => TaskOutcome.Failure(
            $"Task {task.Id} exceeded its time limit of {task.Request.Limits.Timeout?.TotalSeconds ?? 0:0.###} s and was stopped"),
        StopReason.ShuttingDown => TaskOutcome.Failure($"Task {task.Id} was stopped because the proplet is shutting down"),
        _ => null,
    };

    private static string Describe(TrapException trap) => trap.Code switch
    {
        TrapCode.OutOfFuel => $"wasm trap: all fuel consumed ({trap.Message})",
        _ => $"wasm trap: {trap.Message}",
    };

    private static (string? Name, string? Error) ChooseExport(Module module, string name)
    {
        var functions = module.Exports.Where(e => e.Kind == ExternKind.Function).Select(e => e.Name).ToList();
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
