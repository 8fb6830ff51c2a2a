namespace Propeller.Wasm.Runtime;

/// <summary>The engine's epoch, shared by reference with every store's <see cref="ExecutionState"/>.</summary>
internal sealed class EpochCounter
{
    public long Value;
}
