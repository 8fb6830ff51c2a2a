using System.Buffers.Binary;
using System.Text;

namespace Propeller.Wasm;

/// <summary>
/// A linear memory. Backed by a managed byte[] that is replaced on growth, so never keep a span across a call into wasm.
/// </summary>
public sealed class Memory
{
    public const int PageSize = 65536;

    /// <summary>The largest memory a managed array can hold (Array.MaxLength / 64 KiB).</summary>
    public const int MaxPagesSupported = 32767;

    internal byte[] Buffer;

    public Memory(Store store, uint minimum, uint? maximum = null)
        : this(minimum, maximum, store?.Engine.Config.MaxMemoryPages ?? MaxPagesSupported, store?.Limits)
    {
    }

    internal Memory(uint minimum, uint? maximum, int cap, StoreLimits? limiter = null)
    {
        Limiter = limiter;
        if (limiter is not null && minimum * (long)PageSize > limiter.MemorySize)
        {
            throw new TrapException(
                TrapCode.ResourceLimitExceeded,
                $"memory minimum size of {minimum} pages exceeds memory limits ({limiter.MemorySize} bytes)");
        }

        if (maximum is { } max && max < minimum)
        {
            throw new WasmException("memory minimum exceeds maximum");
        }

        if (minimum > (uint)cap)
        {
            throw new WasmException($"memory minimum size of {minimum} pages exceeds memory limits ({cap} pages)");
        }

        Minimum = minimum;
        Maximum = maximum;
        Cap = (int)Math.Min(maximum ?? 65536u, (uint)cap);
        try
        {
            Buffer = minimum == 0 ? [] : new byte[minimum * (long)PageSize];
        }
        catch (OutOfMemoryException e)
        {
            throw new WasmException($"cannot allocate a memory of {minimum} pages", e);
        }
    }

    public uint Minimum { get; }

    public uint? Maximum { get; }

    internal int Cap { get; }

    internal StoreLimits? Limiter { get; }

    /// <summary>Current size in pages.</summary>
    public int Pages => Buffer.Length / PageSize;

    public long Length => Buffer.Length;

    /// <summary>The current limits, used for import matching (the current size acts as the minimum).</summary>
    public Limits Limits => new((uint)Pages, Maximum);

    /// <summary>Grows by <paramref name="deltaPages"/>; returns the old size in pages, or -1 when it cannot grow.</summary>
    public int Grow(uint deltaPages)
    {
        var old = Pages;
        if (deltaPages == 0)
        {
            return old;
        }

        var target = (long)old + deltaPages;
        if (target > Cap || (Limiter is not null && target * PageSize > Limiter.MemorySize))
        {
            if (Limiter is { TrapOnGrowFailure: true })
            {
                Runtime.Traps.ResourceLimit($"memory of {target} pages exceeds memory limits");
            }

            return -1;
        }

        byte[] bigger;
        try
        {
            bigger = new byte[target * PageSize];
        }
        catch (OutOfMemoryException)
        {
            // The host cannot provide the pages right now: wasm sees an ordinary failed grow.
            return -1;
        }

        Buffer.AsSpan().CopyTo(bigger);
        Buffer = bigger;
        return old;
    }

    public Span<byte> GetSpan() => Buffer;

    public Span<byte> GetSpan(int address, int length) => Buffer.AsSpan(address, length);

    public byte ReadByte(int address) => Buffer[address];

    public void WriteByte(int address, byte value) => Buffer[address] = value;

    public int ReadInt32(int address) => BinaryPrimitives.ReadInt32LittleEndian(Buffer.AsSpan(address));

    public void WriteInt32(int address, int value) => BinaryPrimitives.WriteInt32LittleEndian(Buffer.AsSpan(address), value);

    public long ReadInt64(int address) => BinaryPrimitives.ReadInt64LittleEndian(Buffer.AsSpan(address));

    public void WriteInt64(int address, long value) => BinaryPrimitives.WriteInt64LittleEndian(Buffer.AsSpan(address), value);

    public string ReadString(int address, int length) => Encoding.UTF8.GetString(Buffer, address, length);

    public int WriteString(int address, string value) => Encoding.UTF8.GetBytes(value, Buffer.AsSpan(address));
}
