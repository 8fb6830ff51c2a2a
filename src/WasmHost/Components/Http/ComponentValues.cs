using System.Runtime.InteropServices;
using System.Text;
using static Propeller.WasmHost.Components.Http.ComponentNative;

namespace Propeller.WasmHost.Components.Http;

/// <summary>
/// Reads host-function arguments and builds results as Wasmtime's C component values (<see cref="ComponentNative.Val"/>).
/// Results are allocated with Wasmtime's own constructors (<c>wasm_byte_vec_new</c>, <c>…_new_uninit</c>,
/// <c>wasmtime_component_val_new</c>) because Wasmtime takes ownership of them and frees them; arguments stay Wasmtime's.
/// Every accessor checks the value's kind (and that a pointer it follows is there) before it reads: the arguments have the
/// types the guest declared for the import, which Wasmtime does not check against ours (<see cref="ImportSignatureException"/>).
/// </summary>
internal static unsafe class ComponentValues
{
    public static string String(Val* value) =>
        value->Kind == KindString ? Marshal.PtrToStringUTF8(value->B, checked((int)value->A)) : throw Mismatch("string", value);

    /// <summary>A <c>list&lt;u8&gt;</c> (each element a full value: 32 bytes per byte, the C API's price).</summary>
    public static byte[] Bytes(Val* value)
    {
        if (value->Kind != KindList)
        {
            throw Mismatch("list<u8>", value);
        }

        var count = checked((int)value->A);
        var items = (Val*)value->B;
        var bytes = new byte[count];
        for (var i = 0; i < count; i++)
        {
            bytes[i] = items[i].Kind == KindU8 ? (byte)items[i].A : throw Mismatch("list<u8>", &items[i]);
        }

        return bytes;
    }

    public static ulong U64(Val* value) => value->Kind == KindU64 ? (ulong)value->A : throw Mismatch("u64", value);

    public static uint U32(Val* value) => value->Kind == KindU32 ? (uint)value->A : throw Mismatch("u32", value);

    public static ushort U16(Val* value) => value->Kind == KindU16 ? (ushort)value->A : throw Mismatch("u16", value);

    /// <summary>The elements of a list (each still to be checked by its own accessor).</summary>
    public static Span<Val> Items(Val* value) => value->Kind == KindList
        ? new Span<Val>((void*)value->B, checked((int)value->A))
        : throw Mismatch("list", value);

    /// <summary>The elements of a tuple of <paramref name="length"/> values.</summary>
    public static Span<Val> TupleItems(Val* value, int length) => value->Kind == KindTuple && value->A == length
        ? new Span<Val>((void*)value->B, length)
        : throw Mismatch($"tuple of {length}", value);

    /// <summary>An option's payload, or null for <c>none</c>.</summary>
    public static Val* Option(Val* value) => value->Kind == KindOption ? (Val*)value->A : throw Mismatch("option", value);

    /// <summary>Whether a result is ok, and its payload (null when the case has none).</summary>
    public static bool Result(Val* value, out Val* payload)
    {
        if (value->Kind != KindResult)
        {
            throw Mismatch("result", value);
        }

        payload = (Val*)value->B;
        return (byte)value->A != 0;
    }

    /// <summary>A variant's case name.</summary>
    public static string Case(Val* value) => value->Kind is KindVariant or KindEnum
        ? Marshal.PtrToStringUTF8(value->B, checked((int)value->A))
        : throw Mismatch("variant", value);

    public static Val Bool(bool value) => new() { Kind = KindBool, A = value ? 1 : 0 };

    public static Val U8(byte value) => new() { Kind = KindU8, A = value };

    public static Val U16(ushort value) => new() { Kind = KindU16, A = value };

    public static Val U32(uint value) => new() { Kind = KindU32, A = (nint)value };

    public static Val U64(ulong value) => new() { Kind = KindU64, A = (nint)value };

    public static Val String(string text)
    {
        var vector = Utf8(text);
        return new Val { Kind = KindString, A = (nint)vector.Size, B = vector.Data };
    }

    public static Val Bytes(ReadOnlySpan<byte> bytes)
    {
        Vec vector;
        wasmtime_component_vallist_new_uninit(&vector, (nuint)bytes.Length);
        var items = (Val*)vector.Data;
        for (var i = 0; i < bytes.Length; i++)
        {
            items[i] = U8(bytes[i]);
        }

        return new Val { Kind = KindList, A = (nint)vector.Size, B = vector.Data };
    }

    public static Val List(ReadOnlySpan<Val> items)
    {
        Vec vector;
        wasmtime_component_vallist_new_uninit(&vector, (nuint)items.Length);
        items.CopyTo(new Span<Val>((void*)vector.Data, items.Length));
        return new Val { Kind = KindList, A = (nint)vector.Size, B = vector.Data };
    }

    public static Val Tuple(params ReadOnlySpan<Val> items)
    {
        Vec vector;
        wasmtime_component_valtuple_new_uninit(&vector, (nuint)items.Length);
        items.CopyTo(new Span<Val>((void*)vector.Data, items.Length));
        return new Val { Kind = KindTuple, A = (nint)vector.Size, B = vector.Data };
    }

    public static Val Record(params ReadOnlySpan<(string Name, Val Value)> fields)
    {
        Vec vector;
        wasmtime_component_valrecord_new_uninit(&vector, (nuint)fields.Length);
        var entries = (RecordEntry*)vector.Data;
        for (var i = 0; i < fields.Length; i++)
        {
            entries[i] = new RecordEntry { Name = Utf8(fields[i].Name), Value = fields[i].Value };
        }

        return new Val { Kind = KindRecord, A = (nint)vector.Size, B = vector.Data };
    }

    public static Val None() => new() { Kind = KindOption };

    public static Val Some(Val value) => new() { Kind = KindOption, A = Box(value) };

    public static Val Ok() => new() { Kind = KindResult, A = 1 };

    public static Val Ok(Val value) => new() { Kind = KindResult, A = 1, B = Box(value) };

    public static Val Err() => new() { Kind = KindResult };

    public static Val Err(Val value) => new() { Kind = KindResult, B = Box(value) };

    public static Val Variant(string name) => Variant(name, null);

    public static Val Variant(string name, Val? payload)
    {
        var vector = Utf8(name);
        return new Val { Kind = KindVariant, A = (nint)vector.Size, B = vector.Data, C = payload is { } p ? Box(p) : 0 };
    }

    public static Val Enum(string name)
    {
        var vector = Utf8(name);
        return new Val { Kind = KindEnum, A = (nint)vector.Size, B = vector.Data };
    }

    private static nint Box(Val value) => wasmtime_component_val_new(&value);

    private static Vec Utf8(string text)
    {
        var bytes = Encoding.UTF8.GetBytes(text);
        Vec vector;
        fixed (byte* p = bytes)
        {
            wasm_byte_vec_new(&vector, (nuint)bytes.Length, p);
        }

        return vector;
    }

    /// <summary>The error for a value that is not the <paramref name="expected"/> one (null: a payload that is not there).</summary>
    public static ImportSignatureException Mismatch(string expected, Val* value) =>
        new(value is null ? $"expected a {expected} argument, got none" : $"expected a {expected} argument, got a value of kind {value->Kind}");
}
