namespace Propeller.Wasm;

/// <summary>Engine settings. Guest code runs on a dedicated thread per store whose stack size is set here.</summary>
public sealed class Config
{
    /// <summary>Maximum nesting of wasm calls before the "call stack exhausted" trap.</summary>
    public int MaxCallDepth { get; private set; } = 20_000;

    /// <summary>Stack reserved for the guest thread of each store.</summary>
    public int GuestStackSize { get; private set; } = 256 << 20;

    /// <summary>Upper bound on any linear memory, in 64 KiB pages (the CLR caps a byte[] just under 2 GiB).</summary>
    public int MaxMemoryPages { get; private set; } = Memory.MaxPagesSupported;

    /// <summary>
    /// Compile fuel metering into every function (Wasmtime's cost model: 1 per operator, charged per basic block,
    /// checked at function entry and loop headers). A new store then holds 0 fuel: set it with <see cref="Store.SetFuel"/>.
    /// </summary>
    public bool ConsumeFuel { get; private set; }

    /// <summary>
    /// Compile epoch checks at function entry and loop headers, so <see cref="Engine.IncrementEpoch"/> past a store's
    /// deadline, or <see cref="Store.Interrupt"/>, stops running guest code with the "interrupt" trap.
    /// </summary>
    public bool EpochInterruption { get; private set; }

    public Config WithConsumeFuel(bool enabled)
    {
        ConsumeFuel = enabled;
        return this;
    }

    public Config WithEpochInterruption(bool enabled)
    {
        EpochInterruption = enabled;
        return this;
    }

    public Config WithMaxCallDepth(int depth)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(depth, 1);
        MaxCallDepth = depth;
        return this;
    }

    public Config WithGuestStackSize(int bytes)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(bytes, 1 << 20);
        GuestStackSize = bytes;
        return this;
    }

    public Config WithMaxMemoryPages(int pages)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(pages);
        MaxMemoryPages = Math.Min(pages, Memory.MaxPagesSupported);
        return this;
    }
}
