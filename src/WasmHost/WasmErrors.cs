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

    /// <summary>
    /// Wasmtime's own trap texts (its TrapCode's Display) and the names results use. A component call reports a trap as
    /// a plain error carrying these texts (no <see cref="TrapException"/>), so they are mapped here (ADR 0011).
    /// </summary>
    private static readonly (string Message, string Kind)[] TrapMessages =
    [
        ("wasm `unreachable` instruction executed", "unreachable"),
        ("all fuel consumed by WebAssembly", "all fuel consumed"),
        ("undefined element: out of bounds table access", "undefined element"),
    ];

    /// <summary>The cause of a Wasmtime error without its backtrace: the last non-empty line after "Caused by:".</summary>
    public static string Reason(WasmtimeException error)
    {
        ArgumentNullException.ThrowIfNull(error);
        return Reason(error.Message);
    }

    /// <summary>The same for the text of an error the C API returned (ADR 0015's direct calls).</summary>
    public static string Reason(string message)
    {
        ArgumentNullException.ThrowIfNull(message);
        var caused = message.LastIndexOf("Caused by:", StringComparison.Ordinal);
        if (caused < 0)
        {
            return Named(message.Trim());
        }

        var lines = message[(caused + "Caused by:".Length)..]
            .Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        return Named(lines.Length == 0 ? message.Trim() : string.Join(": ", lines));
    }

    /// <summary>Whether the guest ran out of fuel (a core trap, or a component call's error text).</summary>
    public static bool OutOfFuel(WasmtimeException error) =>
        error is TrapException trap ? trap.Type == TrapCode.OutOfFuel : Reason(error) == "wasm trap: all fuel consumed";

    private static string Named(string reason)
    {
        if (reason.Contains("maximum concurrent limit of", StringComparison.Ordinal))
        {
            // The pooling allocator has no free slot (ADR 0011): a capacity condition, not a fault of the module.
            return $"no free WebAssembly instance slot in the pooling allocator ({reason}); retry when running tasks end, or raise PROPLET_WASM_POOL_INSTANCES";
        }

        if (reason.Contains("pooling allocator", StringComparison.Ordinal))
        {
            // A memory, table or instance beyond the pool's slots; Wasmtime checks that when it compiles.
            return $"{reason} (a limit of the proplet's pooling allocator: PROPLET_TASK_MAX_MEMORY_MIB sizes its memory slots; PROPLET_WASM_POOL_INSTANCES=0 turns the pool off)";
        }

        const string Prefix = "wasm trap: ";
        if (reason.StartsWith(Prefix, StringComparison.Ordinal))
        {
            foreach (var (message, kind) in TrapMessages)
            {
                if (reason.AsSpan(Prefix.Length).StartsWith(message, StringComparison.Ordinal))
                {
                    return Prefix + kind;
                }
            }
        }

        return reason;
    }
}
