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

    /// <summary>Tables a capped store may create: with <see cref="WasmPool.DefaultTableElements"/> elements each, what a
    /// guest can hold in tables beside its memory stays small (16 × 100,000 × 8 bytes: 12.5 MiB at most).</summary>
    public const int CappedTables = 16;

    /// <summary>
    /// Caps <paramref name="store"/>'s guest memory at <paramref name="bytes"/> in all. Wasmtime's limit is per linear
    /// memory and multi-memory is on, so a module with four memories had four times the cap: a capped store may create
    /// one memory (a module or component with more fails to instantiate), and its tables are bounded as the pool's are,
    /// also on the on-demand allocator.
    /// </summary>
    public static void Cap(Store store, long bytes)
    {
        ArgumentNullException.ThrowIfNull(store);
        store.SetLimits(memorySize: bytes, tableElements: WasmPool.DefaultTableElements, tables: CappedTables, memories: 1);
    }

    public static bool Reached(Memory memory, long limitBytes)
    {
        ArgumentNullException.ThrowIfNull(memory);
        return memory.GetLength() + Margin > limitBytes;
    }
}
