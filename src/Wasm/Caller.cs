using Propeller.Wasm.Runtime;

namespace Propeller.Wasm;

/// <summary>What a host function sees of its caller: the calling instance's exports and the store data.</summary>
public sealed class Caller
{
    private readonly ExecutionState? _state;

    internal Caller(ExecutionState? state)
    {
        _state = state;
    }

    public Store? Store => _state?.Store;

    public object? Data => _state?.Store.Data;

    /// <summary>The wasm instance that made the call, when known.</summary>
    public Instance? Instance => _state?.CallerInstance;

    public Memory? GetMemory(string name) => Instance?.GetMemory(name);

    public Function? GetFunction(string name) => Instance?.GetFunction(name);

    public Global? GetGlobal(string name) => Instance?.GetGlobal(name);

    public Table? GetTable(string name) => Instance?.GetTable(name);
}
