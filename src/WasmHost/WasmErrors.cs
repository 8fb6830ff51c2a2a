using Wasmtime;

namespace Propeller.WasmHost;

/// <summary>
/// Short texts for Wasmtime's errors. Wasmtime's messages start with a backtrace ("error while executing at wasm
/// backtrace: ..."), and the reason is the last "Caused by" line; results and denies carry the reason only.
/// </summary>
public static class WasmErrors
{
    /// <summary>"wasm trap: KIND" with the spec's names for the common traps (the texts results had before, ADR 0007).</summary>
    public static string Trap(TrapException trap)
    {
        ArgumentNullException.ThrowIfNull(trap);
        var kind = trap.Type switch
        {
            TrapCode.Unreachable => "unreachable",
            TrapCode.StackOverflow => "call stack exhausted",
            TrapCode.MemoryOutOfBounds => "out of bounds memory access",
            TrapCode.TableOutOfBounds => "undefined element",
            TrapCode.IndirectCallToNull => "uninitialized element",
            TrapCode.BadSignature => "indirect call type mismatch",
            TrapCode.IntegerOverflow => "integer overflow",
            TrapCode.IntegerDivisionByZero => "integer divide by zero",
            TrapCode.BadConversionToInteger => "invalid conversion to integer",
            TrapCode.OutOfFuel => "all fuel consumed",
            TrapCode.Interrupt => "interrupt",
            _ => Reason(trap).Replace("wasm trap: ", "", StringComparison.Ordinal),
        };
        return $"wasm trap: {kind}";
    }

    /// <summary>The cause of a Wasmtime error without its backtrace: the last non-empty line after "Caused by:".</summary>
    public static string Reason(WasmtimeException error)
    {
        ArgumentNullException.ThrowIfNull(error);
        var message = error.Message;
        var caused = message.LastIndexOf("Caused by:", StringComparison.Ordinal);
        if (caused < 0)
        {
            return message.Trim();
        }

        var lines = message[(caused + "Caused by:".Length)..]
            .Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        return lines.Length == 0 ? message.Trim() : string.Join(": ", lines);
    }
}
