using System.Runtime.CompilerServices;

namespace Propeller.Wasm.Runtime;

/// <summary>
/// Per-store state that generated code touches at function entry and exit: the call depth and the native stack floor,
/// and, when compiled in, the remaining fuel and the epoch deadline (checked at function entry and loop headers).
/// </summary>
internal sealed class ExecutionState
{
    [ThreadStatic]
    private static ExecutionState? t_current;

    public int Depth;
    public int MaxDepth;
    public nuint StackLimit;
    public Instance? CallerInstance;

    /// <summary>
    /// Fuel left. Generated code copies it into a local at entry, subtracts each basic block's cost there, traps at a check
    /// when it is negative, and writes it back before calls and at return.
    /// </summary>
    public long Fuel;

    /// <summary>
    /// 1 once this store's epoch deadline has passed (set by Engine.IncrementEpoch and Store.SetEpochDeadline) or
    /// Store.Interrupt was called: the single field the generated epoch check reads.
    /// </summary>
    public int Interrupted;

    /// <summary>The engine epoch at which the store is interrupted.</summary>
    public long EpochDeadline = long.MaxValue;

    public ExecutionState(Store store, int maxDepth)
    {
        Store = store;
        MaxDepth = maxDepth;
        Caller = new Caller(this);
    }

    public Store Store { get; }

    public Caller Caller { get; }

    /// <summary>The state of the store whose guest thread is the current thread, if any.</summary>
    public static ExecutionState? Current
    {
        get => t_current;
        set => t_current = value;
    }

    /// <summary>
    /// Function entry: the depth counter, the stack floor computed by the guest thread, and every 256 levels the runtime's
    /// own TryEnsureSufficientExecutionStack as a second line of defence.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe void Enter(ExecutionState state)
    {
        byte marker = 0;
        var depth = ++state.Depth;
        if (depth > state.MaxDepth || (nuint)(&marker) < state.StackLimit
            || ((depth & 255) == 0 && !RuntimeHelpers.TryEnsureSufficientExecutionStack()))
        {
            Traps.StackExhausted();
        }
    }

    /// <summary>Epoch check at function entry and loop headers: one volatile load of a flag other threads set.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void CheckEpoch(ExecutionState state)
    {
        if (Volatile.Read(ref state.Interrupted) != 0)
        {
            Traps.Interrupted();
        }
    }
}
