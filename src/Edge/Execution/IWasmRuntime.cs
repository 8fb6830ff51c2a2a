using Propeller.Edge.Tasks;

namespace Propeller.Edge.Execution;

/// <summary>Runs a task's binary to completion (or until the task is aborted) and says what it produced.</summary>
public interface IWasmRuntime
{
    /// <summary>What discovery reports as <c>wasm_runtime</c>.</summary>
    string Name { get; }

    Task<TaskOutcome> RunAsync(RunningTask task, byte[] binary, CancellationToken cancellationToken);

    /// <summary>Compiles a latent task's component and keeps it for <see cref="InvokeAsync"/> (spec §2.10).</summary>
    LatentPreparation Prepare(RunningTask task, byte[] binary);

    /// <summary>Runs one invocation of a latent task: <paramref name="invocation"/> carries the merged env and the inputs.</summary>
    Task<TaskOutcome> InvokeAsync(RunningTask invocation, object prepared, CancellationToken cancellationToken);
}
