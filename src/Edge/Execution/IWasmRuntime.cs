using Propeller.Edge.Tasks;

namespace Propeller.Edge.Execution;

/// <summary>Runs a task's binary to completion (or until the task is aborted) and says what it produced.</summary>
public interface IWasmRuntime
{
    /// <summary>What discovery reports as <c>wasm_runtime</c>.</summary>
    string Name { get; }

    Task<TaskOutcome> RunAsync(RunningTask task, byte[] binary, CancellationToken cancellationToken);

    /// <summary>
    /// Whether <see cref="RunAsync"/> serves <paramref name="binary"/> as an HTTP proxy (spec §2.11): its task reports
    /// "started at port N" and its time limit applies to each request, so the task's own timer is not armed for it.
    /// </summary>
    bool ServesHttpProxy(byte[] binary);

    /// <summary>Compiles a latent task's component and keeps it for <see cref="InvokeAsync"/> (spec §2.10).</summary>
    LatentPreparation Prepare(RunningTask task, byte[] binary);

    /// <summary>Runs one invocation of a latent task: <paramref name="invocation"/> carries the merged env and the inputs.</summary>
    Task<TaskOutcome> InvokeAsync(RunningTask invocation, object prepared, CancellationToken cancellationToken);
}
