using System.Runtime.CompilerServices;

namespace Propeller.Wasm.Runtime;

/// <summary>
/// Per-store state that generated code touches at function entry and exit: the call depth and the native stack floor.
/// Issue 5's fuel counter, epoch deadline and interrupt flag belong here too; the compiler's entry and loop-header hooks
/// (FunctionCompiler.EmitEntryCheck / EmitLoopHeaderCheck) are where they will be checked.
/// </summary>
internal sealed class ExecutionState
{
    [ThreadStatic]
    private static ExecutionState? t_current;

    public int Depth;
    public int MaxDepth;
    public nuint StackLimit;
    public Instance? CallerInstance;

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
}
