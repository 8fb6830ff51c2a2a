using Propeller.Edge.Tasks;

namespace Propeller.Edge.Execution;

/// <summary>Runs a task's binary to completion (or until the task is aborted) and says what it produced.</summary>
public interface IWasmRuntime
{
    /// <summary>What discovery reports as <c>wasm_runtime</c>.</summary>
    string Name { get; }

    Task<TaskOutcome> RunAsync(RunningTask task, byte[] binary, CancellationToken cancellationToken);
}
