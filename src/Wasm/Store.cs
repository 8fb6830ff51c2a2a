using Propeller.Wasm.Runtime;

namespace Propeller.Wasm;

/// <summary>
/// Owns instances and their runtime state. Guest code of a store runs on the store's own thread (see Config.GuestStackSize),
/// one call at a time. Dispose the store to stop that thread.
/// </summary>
public sealed class Store : IDisposable
{
    public Store(Engine engine, object? data = null)
    {
        ArgumentNullException.ThrowIfNull(engine);
        Engine = engine;
        Data = data;
        State = new ExecutionState(this, engine.Config.MaxCallDepth);
        Thread = new GuestThread(State, engine.Config.GuestStackSize);
    }

    public Engine Engine { get; }

    /// <summary>Embedder data, visible to host functions through <see cref="Caller.Data"/>.</summary>
    public object? Data { get; set; }

    internal ExecutionState State { get; }

    internal GuestThread Thread { get; }

    public void Dispose() => Thread.Dispose();
}
