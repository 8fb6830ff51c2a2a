using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Propeller.Wasm.Runtime;

/// <summary>
/// Memory instructions called from generated code. The effective address is computed in 64 bits (the offset may be up to
/// 2^32-1) and checked explicitly: .NET cannot turn a guard-page fault into a catchable exception.
/// </summary>
internal static class MemoryOps
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int LoadI32(int address, Memory memory, long offset)
    {
        var buffer = memory.Buffer;
        var ea = (ulong)(uint)address + (ulong)offset;
        if (ea + 4 > (ulong)buffer.Length)
        {
            Traps.MemoryOutOfBounds();
        }

        return Unsafe.ReadUnaligned<int>(ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(buffer), (nint)ea));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static long LoadI64(int address, Memory memory, long offset)
    {
        var buffer = memory.Buffer;
        var ea = (ulong)(uint)address + (ulong)offset;
        if (ea + 8 > (ulong)buffer.Length)
        {
            Traps.MemoryOutOfBounds();
        }

        return Unsafe.ReadUnaligned<long>(ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(buffer), (nint)ea));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float LoadF32(int address, Memory memory, long offset)
    {
        var buffer = memory.Buffer;
        var ea = (ulong)(uint)address + (ulong)offset;
        if (ea + 4 > (ulong)buffer.Length)
        {
            Traps.MemoryOutOfBounds();
        }

        return Unsafe.ReadUnaligned<float>(ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(buffer), (nint)ea));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static double LoadF64(int address, Memory memory, long offset)
    {
        var buffer = memory.Buffer;
        var ea = (ulong)(uint)address + (ulong)offset;
        if (ea + 8 > (ulong)buffer.Length)
        {
            Traps.MemoryOutOfBounds();
        }

        return Unsafe.ReadUnaligned<double>(ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(buffer), (nint)ea));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int LoadI32S8(int address, Memory memory, long offset)
    {
        var buffer = memory.Buffer;
        var ea = (ulong)(uint)address + (ulong)offset;
        if (ea + 1 > (ulong)buffer.Length)
        {
            Traps.MemoryOutOfBounds();
        }

        return Unsafe.ReadUnaligned<sbyte>(ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(buffer), (nint)ea));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int LoadI32U8(int address, Memory memory, long offset)
    {
        var buffer = memory.Buffer;
        var ea = (ulong)(uint)address + (ulong)offset;
        if (ea + 1 > (ulong)buffer.Length)
        {
            Traps.MemoryOutOfBounds();
        }

        return Unsafe.ReadUnaligned<byte>(ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(buffer), (nint)ea));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int LoadI32S16(int address, Memory memory, long offset)
    {
        var buffer = memory.Buffer;
        var ea = (ulong)(uint)address + (ulong)offset;
        if (ea + 2 > (ulong)buffer.Length)
        {
            Traps.MemoryOutOfBounds();
        }

        return Unsafe.ReadUnaligned<short>(ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(buffer), (nint)ea));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int LoadI32U16(int address, Memory memory, long offset)
    {
        var buffer = memory.Buffer;
        var ea = (ulong)(uint)address + (ulong)offset;
        if (ea + 2 > (ulong)buffer.Length)
        {
            Traps.MemoryOutOfBounds();
        }

        return Unsafe.ReadUnaligned<ushort>(ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(buffer), (nint)ea));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static long LoadI64S8(int address, Memory memory, long offset)
    {
        var buffer = memory.Buffer;
        var ea = (ulong)(uint)address + (ulong)offset;
        if (ea + 1 > (ulong)buffer.Length)
        {
            Traps.MemoryOutOfBounds();
        }

        return Unsafe.ReadUnaligned<sbyte>(ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(buffer), (nint)ea));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static long LoadI64U8(int address, Memory memory, long offset)
    {
        var buffer = memory.Buffer;
        var ea = (ulong)(uint)address + (ulong)offset;
        if (ea + 1 > (ulong)buffer.Length)
        {
            Traps.MemoryOutOfBounds();
        }

        return Unsafe.ReadUnaligned<byte>(ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(buffer), (nint)ea));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static long LoadI64S16(int address, Memory memory, long offset)
    {
        var buffer = memory.Buffer;
        var ea = (ulong)(uint)address + (ulong)offset;
        if (ea + 2 > (ulong)buffer.Length)
        {
            Traps.MemoryOutOfBounds();
        }

        return Unsafe.ReadUnaligned<short>(ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(buffer), (nint)ea));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static long LoadI64U16(int address, Memory memory, long offset)
    {
        var buffer = memory.Buffer;
        var ea = (ulong)(uint)address + (ulong)offset;
        if (ea + 2 > (ulong)buffer.Length)
        {
            Traps.MemoryOutOfBounds();
        }

        return Unsafe.ReadUnaligned<ushort>(ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(buffer), (nint)ea));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static long LoadI64S32(int address, Memory memory, long offset)
    {
        var buffer = memory.Buffer;
        var ea = (ulong)(uint)address + (ulong)offset;
        if (ea + 4 > (ulong)buffer.Length)
        {
            Traps.MemoryOutOfBounds();
        }

        return Unsafe.ReadUnaligned<int>(ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(buffer), (nint)ea));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static long LoadI64U32(int address, Memory memory, long offset)
    {
        var buffer = memory.Buffer;
        var ea = (ulong)(uint)address + (ulong)offset;
        if (ea + 4 > (ulong)buffer.Length)
        {
            Traps.MemoryOutOfBounds();
        }

        return Unsafe.ReadUnaligned<uint>(ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(buffer), (nint)ea));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void StoreI32(int address, int value, Memory memory, long offset)
    {
        var buffer = memory.Buffer;
        var ea = (ulong)(uint)address + (ulong)offset;
        if (ea + 4 > (ulong)buffer.Length)
        {
            Traps.MemoryOutOfBounds();
        }

        Unsafe.WriteUnaligned(ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(buffer), (nint)ea), value);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void StoreI64(int address, long value, Memory memory, long offset)
    {
        var buffer = memory.Buffer;
        var ea = (ulong)(uint)address + (ulong)offset;
        if (ea + 8 > (ulong)buffer.Length)
        {
            Traps.MemoryOutOfBounds();
        }

        Unsafe.WriteUnaligned(ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(buffer), (nint)ea), value);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void StoreF32(int address, float value, Memory memory, long offset)
    {
        var buffer = memory.Buffer;
        var ea = (ulong)(uint)address + (ulong)offset;
        if (ea + 4 > (ulong)buffer.Length)
        {
            Traps.MemoryOutOfBounds();
        }

        Unsafe.WriteUnaligned(ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(buffer), (nint)ea), value);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void StoreF64(int address, double value, Memory memory, long offset)
    {
        var buffer = memory.Buffer;
        var ea = (ulong)(uint)address + (ulong)offset;
        if (ea + 8 > (ulong)buffer.Length)
        {
            Traps.MemoryOutOfBounds();
        }

        Unsafe.WriteUnaligned(ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(buffer), (nint)ea), value);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void StoreI32x8(int address, int value, Memory memory, long offset)
    {
        var buffer = memory.Buffer;
        var ea = (ulong)(uint)address + (ulong)offset;
        if (ea + 1 > (ulong)buffer.Length)
        {
            Traps.MemoryOutOfBounds();
        }

        Unsafe.WriteUnaligned(ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(buffer), (nint)ea), (byte)value);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void StoreI32x16(int address, int value, Memory memory, long offset)
    {
        var buffer = memory.Buffer;
        var ea = (ulong)(uint)address + (ulong)offset;
        if (ea + 2 > (ulong)buffer.Length)
        {
            Traps.MemoryOutOfBounds();
        }

        Unsafe.WriteUnaligned(ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(buffer), (nint)ea), (ushort)value);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void StoreI64x8(int address, long value, Memory memory, long offset)
    {
        var buffer = memory.Buffer;
        var ea = (ulong)(uint)address + (ulong)offset;
        if (ea + 1 > (ulong)buffer.Length)
        {
            Traps.MemoryOutOfBounds();
        }

        Unsafe.WriteUnaligned(ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(buffer), (nint)ea), (byte)value);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void StoreI64x16(int address, long value, Memory memory, long offset)
    {
        var buffer = memory.Buffer;
        var ea = (ulong)(uint)address + (ulong)offset;
        if (ea + 2 > (ulong)buffer.Length)
        {
            Traps.MemoryOutOfBounds();
        }

        Unsafe.WriteUnaligned(ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(buffer), (nint)ea), (ushort)value);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void StoreI64x32(int address, long value, Memory memory, long offset)
    {
        var buffer = memory.Buffer;
        var ea = (ulong)(uint)address + (ulong)offset;
        if (ea + 4 > (ulong)buffer.Length)
        {
            Traps.MemoryOutOfBounds();
        }

        Unsafe.WriteUnaligned(ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(buffer), (nint)ea), (uint)value);
    }

    public static int Size(Memory memory) => memory.Pages;

    public static int Grow(int delta, Memory memory) => memory.Grow((uint)delta);

    public static void Fill(int destination, int value, int count, Memory memory)
    {
        var buffer = memory.Buffer;
        if ((ulong)(uint)destination + (uint)count > (ulong)buffer.Length)
        {
            Traps.MemoryOutOfBounds();
        }

        buffer.AsSpan(destination, count).Fill((byte)value);
    }

    public static void Copy(int destination, int source, int count, Memory memory)
    {
        var buffer = memory.Buffer;
        if ((ulong)(uint)destination + (uint)count > (ulong)buffer.Length
            || (ulong)(uint)source + (uint)count > (ulong)buffer.Length)
        {
            Traps.MemoryOutOfBounds();
        }

        Buffer.BlockCopy(buffer, source, buffer, destination, count);
    }

    public static void Init(int destination, int source, int count, Instance instance, int segment)
    {
        var data = instance.DataSegments[segment];
        var buffer = instance.Memories[0].Buffer;
        if ((ulong)(uint)source + (uint)count > (ulong)data.Length
            || (ulong)(uint)destination + (uint)count > (ulong)buffer.Length)
        {
            Traps.MemoryOutOfBounds();
        }

        Buffer.BlockCopy(data, source, buffer, destination, count);
    }

    public static void DataDrop(Instance instance, int segment) => instance.DataSegments[segment] = [];
}
