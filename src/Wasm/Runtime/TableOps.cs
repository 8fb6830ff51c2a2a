using System.Runtime.CompilerServices;

namespace Propeller.Wasm.Runtime;

/// <summary>Table, reference and global instructions called from generated code.</summary>
internal static class TableOps
{
    /// <summary>The call_indirect lookup: bounds, null and signature checks, in the spec's order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Function ResolveIndirect(int index, Instance instance, int table, int typeId)
    {
        var elements = instance.Tables[table].Elements;
        if ((uint)index >= (uint)elements.Length)
        {
            Traps.UndefinedElement();
        }

        var function = elements[index] as Function;
        if (function is null)
        {
            Traps.UninitializedElement();
        }

        if (function.TypeId != typeId)
        {
            Traps.IndirectCallTypeMismatch();
        }

        instance.State.CallerInstance = instance;
        return function;
    }

    public static object? Get(int index, Instance instance, int table)
    {
        var elements = instance.Tables[table].Elements;
        if ((uint)index >= (uint)elements.Length)
        {
            Traps.TableOutOfBounds();
        }

        return elements[index];
    }

    public static void Set(int index, object? value, Instance instance, int table)
    {
        var elements = instance.Tables[table].Elements;
        if ((uint)index >= (uint)elements.Length)
        {
            Traps.TableOutOfBounds();
        }

        elements[index] = value;
    }

    public static int Size(Instance instance, int table) => instance.Tables[table].Elements.Length;

    public static int Grow(object? initial, int delta, Instance instance, int table) =>
        instance.Tables[table].Grow((uint)delta, initial);

    public static void Fill(int destination, object? value, int count, Instance instance, int table)
    {
        var elements = instance.Tables[table].Elements;
        if ((ulong)(uint)destination + (uint)count > (ulong)elements.Length)
        {
            Traps.TableOutOfBounds();
        }

        Array.Fill(elements, value, destination, count);
    }

    public static void Copy(int destination, int source, int count, Instance instance, int destinationTable, int sourceTable)
    {
        var to = instance.Tables[destinationTable].Elements;
        var from = instance.Tables[sourceTable].Elements;
        if ((ulong)(uint)destination + (uint)count > (ulong)to.Length || (ulong)(uint)source + (uint)count > (ulong)from.Length)
        {
            Traps.TableOutOfBounds();
        }

        Array.Copy(from, source, to, destination, count);
    }

    public static void Init(int destination, int source, int count, Instance instance, int table, int segment)
    {
        var to = instance.Tables[table].Elements;
        var from = instance.ElementSegments[segment];
        if ((ulong)(uint)source + (uint)count > (ulong)from.Length || (ulong)(uint)destination + (uint)count > (ulong)to.Length)
        {
            Traps.TableOutOfBounds();
        }

        Array.Copy(from, source, to, destination, count);
    }

    public static void ElemDrop(Instance instance, int segment) => instance.ElementSegments[segment] = [];

    public static object? RefFunc(Instance instance, int function) => instance.Functions[function];

    public static void SetGlobalI32(int value, Global global) => global.Bits = (uint)value;

    public static void SetGlobalI64(long value, Global global) => global.Bits = value;

    public static void SetGlobalF32(float value, Global global) => global.Bits = (uint)BitConverter.SingleToInt32Bits(value);

    public static void SetGlobalF64(double value, Global global) => global.Bits = BitConverter.DoubleToInt64Bits(value);

    public static void SetGlobalRef(object? value, Global global) => global.Reference = value;

    public static int GetGlobalI32(Global global) => (int)global.Bits;

    public static long GetGlobalI64(Global global) => global.Bits;

    public static float GetGlobalF32(Global global) => BitConverter.Int32BitsToSingle((int)global.Bits);

    public static double GetGlobalF64(Global global) => BitConverter.Int64BitsToDouble(global.Bits);

    public static object? GetGlobalRef(Global global) => global.Reference;
}
