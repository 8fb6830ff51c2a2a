using Wasmtime;

namespace Propeller.WasmHost;

/// <summary>
/// Wasmtime enforces <see cref="Store.SetLimits"/> by refusing a <c>memory.grow</c> past the limit: it returns -1 and
/// nothing traps, so the host cannot see the refusal itself. A guest that failed with its memory within
/// <see cref="Margin"/> of the limit is taken to have run into it (allocators grow by up to a MiB at a time).
/// </summary>
public static class MemoryLimits
{
    public const long Margin = 1 << 20;

    public static bool Reached(Memory memory, long limitBytes)
    {
        ArgumentNullException.ThrowIfNull(memory);
        return memory.GetLength() + Margin > limitBytes;
    }
}
