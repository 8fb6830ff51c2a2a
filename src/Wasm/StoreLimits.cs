namespace Propeller.Wasm;

/// <summary>
/// Resource limits of a store (like Wasmtime's StoreLimits), consulted when a memory or table is created and on every
/// growth. A refused growth returns -1 to wasm unless <see cref="TrapOnGrowFailure"/> is set; a memory or table whose
/// initial size is already over the limit fails instantiation with the <see cref="TrapCode.ResourceLimitExceeded"/> trap.
/// </summary>
public sealed record StoreLimits
{
    /// <summary>Maximum size of each linear memory in bytes.</summary>
    public long MemorySize { get; init; } = long.MaxValue;

    /// <summary>Maximum number of elements of each table.</summary>
    public long TableElements { get; init; } = long.MaxValue;

    /// <summary>Turn a refused memory.grow / table.grow into the ResourceLimitExceeded trap instead of -1.</summary>
    public bool TrapOnGrowFailure { get; init; }
}
