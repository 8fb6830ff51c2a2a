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

    /// <summary>
    /// Runs <paramref name="work"/> on this store's guest thread. Every wasm call made inside it runs inline, without the
    /// thread hand-off a call from another thread costs (tens of microseconds), so batch many small calls this way.
    /// </summary>
    public void Run(Action work)
    {
        ArgumentNullException.ThrowIfNull(work);
        Thread.Run(work);
    }

    /// <inheritdoc cref="Run(Action)"/>
    public T Run<T>(Func<T> work)
    {
        ArgumentNullException.ThrowIfNull(work);
        T result = default!;
        Thread.Run(() => result = work());
        return result;
    }

    public void Dispose() => Thread.Dispose();
}
