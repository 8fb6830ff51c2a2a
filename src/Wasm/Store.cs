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
        if (engine.Config.EpochInterruption)
        {
            engine.RegisterForEpochs(State);
        }
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

    /// <summary>
    /// Runs <paramref name="work"/> on a guest thread without blocking the caller's thread: the task completes with its
    /// result or its exception (a trap, say). Wasm calls made inside it run inline, as with <see cref="Run(Action)"/>.
    /// </summary>
    public Task<T> RunAsync<T>(Func<T> work)
    {
        ArgumentNullException.ThrowIfNull(work);
        return Thread.RunAsync(work);
    }

    /// <summary>Memory and table limits applied to instances created from now on (see <see cref="StoreLimits"/>).</summary>
    public StoreLimits? Limits { get; private set; }

    public void SetLimits(StoreLimits? limits) => Limits = limits;

    /// <summary>Maximum nesting of wasm calls in this store before the "call stack exhausted" trap.</summary>
    public void SetMaxCallDepth(int depth)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(depth, 1);
        State.MaxDepth = depth;
    }

    /// <summary>Fuel left (only meaningful with <see cref="Config.ConsumeFuel"/>). After an OutOfFuel trap it is 0.</summary>
    public long GetFuel() => Math.Max(Volatile.Read(ref State.Fuel), 0);

    public void SetFuel(long fuel)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(fuel);
        Volatile.Write(ref State.Fuel, fuel);
    }

    /// <summary>Adds fuel, for example after an OutOfFuel trap, so the guest can be called again.</summary>
    public void AddFuel(long fuel)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(fuel);
        Volatile.Write(ref State.Fuel, Math.Max(Volatile.Read(ref State.Fuel), 0) + fuel);
    }

    /// <summary>
    /// Sets the deadline <paramref name="ticks"/> epochs beyond the engine's current epoch (with
    /// <see cref="Config.EpochInterruption"/>). Unlike Wasmtime the initial deadline is "never", not "already passed".
    /// </summary>
    public void SetEpochDeadline(long ticks)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(ticks);
        var current = Engine.CurrentEpoch;
        Volatile.Write(ref State.EpochDeadline, ticks > long.MaxValue - current ? long.MaxValue : current + ticks);
        Volatile.Write(ref State.Interrupted, Engine.CurrentEpoch >= Volatile.Read(ref State.EpochDeadline) ? 1 : 0);
    }

    /// <summary>
    /// Stops the guest code running in this store (from any thread) at its next function entry or loop header with the
    /// <see cref="TrapCode.Interrupt"/> trap; later calls trap too until <see cref="SetEpochDeadline"/> is called again.
    /// Requires <see cref="Config.EpochInterruption"/>.
    /// </summary>
    public void Interrupt()
    {
        Volatile.Write(ref State.EpochDeadline, long.MinValue);
        Volatile.Write(ref State.Interrupted, 1);
    }

    public void Dispose() => Thread.Dispose();
}
