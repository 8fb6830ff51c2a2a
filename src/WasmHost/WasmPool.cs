using System.Globalization;
using Wasmtime;

namespace Propeller.WasmHost;

/// <summary>
/// The pooling allocator of the shared engine (ADR 0011, docs/performance.md "Pooling allocator"): Wasmtime reserves
/// <see cref="Instances"/> slots of each kind at engine creation, and an instantiation takes a warm slot instead of
/// mapping fresh memory, so a store that writes guest memory costs a few microseconds instead of a few hundred. The price
/// is address space (every memory slot reserves the wasm32 maximum plus guard, 4 GiB, whatever the cap) and hard
/// limits: at most <see cref="Instances"/> instances alive at once, linear memories up to <see cref="MaxMemoryBytes"/>,
/// tables up to <see cref="TableElements"/> elements, instance metadata up to <see cref="MaxInstanceBytes"/>.
/// </summary>
public sealed record WasmPool
{
    /// <summary>Wasmtime's own default count of concurrent instances.</summary>
    public const int DefaultInstances = 1000;

    /// <summary>The wasm32 maximum: no cap beyond the one each store sets.</summary>
    public const long Wasm32Bytes = 4L << 30;

    /// <summary>Component and core-module instances alive at once; also the count of memory slots.</summary>
    public int Instances { get; init; } = DefaultInstances;

    /// <summary>Largest linear memory a slot holds; a memory that would grow past it gets -1, as at a store limit.</summary>
    public long MaxMemoryBytes { get; init; } = Wasm32Bytes;

    /// <summary>Bytes of each memory kept mapped when a slot is freed (64 KiB: the measured sweet spot).</summary>
    public long KeepResidentBytes { get; init; } = 64 << 10;

    /// <summary>Freed slots kept warm for reuse.</summary>
    public int WarmSlots { get; init; } = 100;

    /// <summary>Elements per table (Wasmtime's default is 20,000; large C/C++ programs have more functions in their table).</summary>
    public const int DefaultTableElements = 100_000;

    /// <summary>Elements per table; <see cref="DefaultTableElements"/> unless set.</summary>
    public int TableElements { get; init; } = DefaultTableElements;

    /// <summary>Per-instance metadata cap (Wasmtime's default is 1 MiB, which a module with tens of thousands of functions exceeds).</summary>
    public int MaxInstanceBytes { get; init; } = 16 << 20;

    /// <summary>
    /// The pool for a process whose guests are capped at <paramref name="maxMemoryMib"/> (null: uncapped, so slots of the
    /// wasm32 maximum); the slot is the cap plus <see cref="MemoryLimits.Margin"/>, because a store limit equal to the
    /// slot would make the margin check of an exhausted memory unreachable.
    /// </summary>
    public static WasmPool For(int instances, long? maxMemoryMib) => new()
    {
        Instances = instances,
        MaxMemoryBytes = maxMemoryMib is { } mib ? Math.Min(Wasm32Bytes, (mib << 20) + MemoryLimits.Margin) : Wasm32Bytes,
    };

    /// <summary>The slot a memory of <paramref name="mib"/> MiB cap needs, or the cap itself when it fits.</summary>
    public long? Clamp(long? mib) =>
        mib is { } m && (m << 20) > MaxMemoryBytes ? MaxMemoryBytes >> 20 : mib;

    internal PoolingAllocationConfig ToConfig() =>
        new PoolingAllocationConfig()
            .WithTotalComponentInstances((uint)Instances)
            .WithMaxCoreInstances((uint)Math.Min(uint.MaxValue, Instances * 4L))
            .WithMaxMemories((uint)Instances)
            .WithMaxTables((uint)Math.Min(uint.MaxValue, Instances * 2L))
            .WithMaxMemoriesPerModule(8)
            .WithMaxTablesPerModule(8)
            .WithMaxMemorySize((nuint)MaxMemoryBytes)
            .WithMaxTableElements((nuint)TableElements)
            .WithMaxCoreInstanceSize((nuint)MaxInstanceBytes)
            .WithMaxComponentInstanceSize((nuint)MaxInstanceBytes)
            .WithLinearMemoryKeepResidentBytes((nuint)KeepResidentBytes)
            .WithMaxUnusedWarmSlots((uint)WarmSlots);

    public override string ToString() => string.Create(
        CultureInfo.InvariantCulture,
        $"pooling: {Instances} instances, memories up to {MaxMemoryBytes >> 20} MiB, tables up to {TableElements} elements, {KeepResidentBytes >> 10} KiB kept resident, {WarmSlots} warm slots");
}
