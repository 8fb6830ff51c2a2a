using System.Runtime.InteropServices;

namespace Propeller.WasmHost.Components.Http;

/// <summary>
/// The part of Wasmtime 50's component C API that serving wasi:http needs and Wasmtime.Dotnet 50.0.1 does not wrap (ADR
/// 0015): a component linker with host-defined resource types and functions, instantiation, export lookup, calls, and the
/// value and resource conversions. Layouts are those of <c>wasmtime/component/val.h</c>; <c>HttpProxyComponentTests</c> and
/// <c>HttpProxyServingTests</c> exercise them against the shipped library, so an upgrade that changes them fails there first.
/// </summary>
internal static unsafe partial class ComponentNative
{
    private const string Library = "wasmtime";

    public const byte KindBool = 0;
    public const byte KindU8 = 2;
    public const byte KindU16 = 4;
    public const byte KindU32 = 6;
    public const byte KindU64 = 8;
    public const byte KindString = 12;
    public const byte KindList = 13;
    public const byte KindRecord = 14;
    public const byte KindTuple = 15;
    public const byte KindVariant = 16;
    public const byte KindEnum = 17;
    public const byte KindOption = 18;
    public const byte KindResult = 19;
    public const byte KindResource = 21;

    /// <summary>
    /// <c>wasmtime_component_val_t</c>: a kind byte, then a 24-byte union. Scalars sit at offset 8; strings, lists, records
    /// and tuples are a (size, data) vector at 8 and 16; a variant is its case name (8, 16) and a value pointer at 24; an
    /// option is a value pointer at 8; a result is a bool at 8 and a value pointer at 16; a resource a pointer at 8.
    /// </summary>
    [StructLayout(LayoutKind.Explicit, Size = 32)]
    public struct Val
    {
        [FieldOffset(0)]
        public byte Kind;

        [FieldOffset(8)]
        public nint A;

        [FieldOffset(16)]
        public nint B;

        [FieldOffset(24)]
        public nint C;
    }

    /// <summary><c>wasmtime_component_valrecord_entry_t</c>: the field name, then its value.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct RecordEntry
    {
        public Vec Name;
        public Val Value;
    }

    /// <summary>Every <c>wasm_*_vec_t</c> and component value vector: size, then data.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct Vec
    {
        public nuint Size;
        public nint Data;
    }

    /// <summary><c>wasmtime_component_instance_t</c> and <c>wasmtime_component_func_t</c>: store id and index.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct Handle
    {
        public ulong StoreId;
        public nuint Index;
    }

    [LibraryImport(Library)]
    public static partial nint wasmtime_store_context(nint store);

    [LibraryImport(Library)]
    public static partial nint wasmtime_context_get_data(nint context);

    [LibraryImport(Library)]
    public static partial nint wasmtime_component_linker_new(nint engine);

    [LibraryImport(Library)]
    public static partial void wasmtime_component_linker_delete(nint linker);

    [LibraryImport(Library)]
    public static partial nint wasmtime_component_linker_root(nint linker);

    [LibraryImport(Library)]
    public static partial nint wasmtime_component_linker_define_unknown_imports_as_traps(nint linker, nint component);

    [LibraryImport(Library)]
    public static partial nint wasmtime_component_linker_instance_add_instance(nint instance, byte* name, nuint length, nint* added);

    [LibraryImport(Library)]
    public static partial nint wasmtime_component_linker_instance_add_resource(
        nint instance, byte* name, nuint length, nint type, delegate* unmanaged[Cdecl]<nint, nint, uint, nint> destructor, nint data, nint finalizer);

    [LibraryImport(Library)]
    public static partial nint wasmtime_component_linker_instance_add_func(
        nint instance, byte* name, nuint length, delegate* unmanaged[Cdecl]<nint, nint, nint, Val*, nuint, Val*, nuint, nint> callback, nint data, nint finalizer);

    [LibraryImport(Library)]
    public static partial void wasmtime_component_linker_instance_delete(nint instance);

    [LibraryImport(Library)]
    public static partial nint wasmtime_component_linker_instantiate(nint linker, nint context, nint component, Handle* instance);

    [LibraryImport(Library)]
    public static partial nint wasmtime_component_get_export_index(nint component, nint instanceIndex, byte* name, nuint length);

    [LibraryImport(Library)]
    [return: MarshalAs(UnmanagedType.U1)]
    public static partial bool wasmtime_component_instance_get_func(Handle* instance, nint context, nint index, Handle* function);

    [LibraryImport(Library)]
    public static partial nint wasmtime_component_func_call(Handle* function, nint context, Val* arguments, nuint count, Val* results, nuint resultCount);

    [LibraryImport(Library)]
    public static partial void wasmtime_component_val_delete(Val* value);

    [LibraryImport(Library)]
    public static partial nint wasmtime_component_val_new(Val* value);

    [LibraryImport(Library)]
    public static partial void wasmtime_component_vallist_new_uninit(Vec* vector, nuint size);

    [LibraryImport(Library)]
    public static partial void wasmtime_component_valtuple_new_uninit(Vec* vector, nuint size);

    [LibraryImport(Library)]
    public static partial void wasmtime_component_valrecord_new_uninit(Vec* vector, nuint size);

    [LibraryImport(Library)]
    public static partial void wasm_byte_vec_new(Vec* vector, nuint size, byte* data);

    [LibraryImport(Library)]
    public static partial nint wasmtime_component_resource_type_new_host(uint type);

    [LibraryImport(Library)]
    public static partial void wasmtime_component_resource_type_delete(nint type);

    [LibraryImport(Library)]
    public static partial nint wasmtime_component_resource_host_new([MarshalAs(UnmanagedType.U1)] bool owned, uint rep, uint ty);

    [LibraryImport(Library)]
    public static partial void wasmtime_component_resource_host_delete(nint resource);

    [LibraryImport(Library)]
    public static partial uint wasmtime_component_resource_host_rep(nint resource);

    [LibraryImport(Library)]
    public static partial uint wasmtime_component_resource_host_type(nint resource);

    [LibraryImport(Library)]
    public static partial nint wasmtime_component_resource_host_to_any(nint context, nint resource, nint* any);

    [LibraryImport(Library)]
    public static partial nint wasmtime_component_resource_any_to_host(nint context, nint any, nint* host);

    [LibraryImport(Library)]
    public static partial void wasmtime_component_resource_any_delete(nint any);

    [LibraryImport(Library)]
    [return: MarshalAs(UnmanagedType.U1)]
    public static partial bool wasmtime_component_resource_any_owned(nint any);

    [LibraryImport(Library)]
    public static partial nint wasmtime_error_new(byte* message);

    [LibraryImport(Library)]
    public static partial void wasmtime_error_message(nint error, Vec* message);

    [LibraryImport(Library)]
    public static partial void wasmtime_error_delete(nint error);

    [LibraryImport(Library)]
    public static partial void wasm_byte_vec_delete(Vec* vector);

    /// <summary>The text of <paramref name="error"/>, which is deleted.</summary>
    public static string TakeMessage(nint error)
    {
        Vec message;
        wasmtime_error_message(error, &message);
        var text = Marshal.PtrToStringUTF8(message.Data, checked((int)message.Size));
        wasm_byte_vec_delete(&message);
        wasmtime_error_delete(error);
        return text;
    }

    /// <summary>A new Wasmtime error with <paramref name="message"/> (a host function's failure, which traps the guest).</summary>
    public static nint NewError(string message)
    {
        var utf8 = System.Text.Encoding.UTF8.GetBytes(message + "\0");
        fixed (byte* p = utf8)
        {
            return wasmtime_error_new(p);
        }
    }
}
