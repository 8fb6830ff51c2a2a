using System.Diagnostics.CodeAnalysis;

namespace Propeller.Wasm.Runtime;

/// <summary>Throw helpers kept out of line so the checks in generated code and helpers stay small enough to inline.</summary>
internal static class Traps
{
    [DoesNotReturn]
    public static void StackExhausted() => throw new TrapException(TrapCode.StackOverflow, "call stack exhausted");

    [DoesNotReturn]
    public static void Unreachable() => throw new TrapException(TrapCode.Unreachable, "unreachable");

    [DoesNotReturn]
    public static void MemoryOutOfBounds() => throw new TrapException(TrapCode.MemoryOutOfBounds, "out of bounds memory access");

    [DoesNotReturn]
    public static void TableOutOfBounds() => throw new TrapException(TrapCode.TableOutOfBounds, "out of bounds table access");

    [DoesNotReturn]
    public static void UndefinedElement() => throw new TrapException(TrapCode.TableOutOfBounds, "undefined element");

    [DoesNotReturn]
    public static void UninitializedElement() => throw new TrapException(TrapCode.IndirectCallToNull, "uninitialized element");

    [DoesNotReturn]
    public static void IndirectCallTypeMismatch() => throw new TrapException(TrapCode.BadSignature, "indirect call type mismatch");

    [DoesNotReturn]
    public static void DivideByZero() => throw new TrapException(TrapCode.IntegerDivisionByZero, "integer divide by zero");

    [DoesNotReturn]
    public static void IntegerOverflow() => throw new TrapException(TrapCode.IntegerOverflow, "integer overflow");

    [DoesNotReturn]
    public static void InvalidConversion() => throw new TrapException(TrapCode.BadConversionToInteger, "invalid conversion to integer");

    /// <summary>Out of fuel. The counter is reset to 0 so that the host sees "empty" rather than a negative balance.</summary>
    [DoesNotReturn]
    public static void OutOfFuel(ExecutionState state)
    {
        state.Fuel = 0;
        throw new TrapException(TrapCode.OutOfFuel, "all fuel consumed by WebAssembly");
    }

    [DoesNotReturn]
    public static void Interrupted() => throw new TrapException(TrapCode.Interrupt, "interrupt");

    [DoesNotReturn]
    public static void ResourceLimit(string what) => throw new TrapException(TrapCode.ResourceLimitExceeded, what);
}
