using System.Runtime.InteropServices;
using Wasmtime;
using Wasmtime.Components;

namespace Propeller.WasmHost.Components;

/// <summary>
/// The exported functions of a compiled component with their parameter and result types, read through Wasmtime's C API
/// type reflection (<c>wasmtime_component_type</c> and friends). The .NET wrapper (Wasmtime 50.0.1) exposes only a
/// function's parameter count, and WAVE text cannot be parsed without the types, so these few functions are bound here
/// (ADR 0011). The wrapper keeps the native component and engine pointers internal; they are read once per compiled
/// component through reflection, and the type tree is copied into managed <see cref="WitType"/> records at once.
/// </summary>
public static partial class ComponentTypes
{
    private const string Library = "wasmtime";

    /// <summary>Every exported function: top-level ones (null interface), then those of each exported instance, in export order.</summary>
    public static IReadOnlyList<WitFunction> Functions(Component component, Engine engine)
    {
        ArgumentNullException.ThrowIfNull(component);
        ArgumentNullException.ThrowIfNull(engine);
        var componentHandle = WasmtimeHandles.Of(component);
        var engineHandle = WasmtimeHandles.Of(engine);
        var componentRef = false;
        var engineRef = false;
        try
        {
            componentHandle.DangerousAddRef(ref componentRef);
            engineHandle.DangerousAddRef(ref engineRef);
            var type = Native.wasmtime_component_type(componentHandle.DangerousGetHandle());
            try
            {
                var functions = new List<WitFunction>();
                var enginePointer = engineHandle.DangerousGetHandle();
                var count = Native.wasmtime_component_type_export_count(type, enginePointer);
                for (nuint i = 0; i < count; i++)
                {
                    if (!Native.wasmtime_component_type_export_nth(type, enginePointer, i, out var name, out var length, out var export))
                    {
                        continue;
                    }

                    Collect(functions, null, Utf8(name, length), export, enginePointer);
                }

                return functions;
            }
            finally
            {
                Native.wasmtime_component_type_delete(type);
            }
        }
        finally
        {
            if (engineRef)
            {
                engineHandle.DangerousRelease();
            }

            if (componentRef)
            {
                componentHandle.DangerousRelease();
            }
        }
    }

    private static void Collect(List<WitFunction> functions, string? owner, string name, nint export, nint engine)
    {
        try
        {
            Native.wasmtime_component_extern_type(export, out var item);
            try
            {
                if (item.Kind == ItemComponentFunc)
                {
                    functions.Add(Function(owner, name, item.Pointer));
                }
                else if (item.Kind == ItemComponentInstance && owner is null)
                {
                    var count = Native.wasmtime_component_instance_type_export_count(item.Pointer, engine);
                    for (nuint i = 0; i < count; i++)
                    {
                        if (Native.wasmtime_component_instance_type_export_nth(item.Pointer, engine, i, out var inner, out var length, out var innerExport))
                        {
                            Collect(functions, name, Utf8(inner, length), innerExport, engine);
                        }
                    }
                }
            }
            finally
            {
                Native.wasmtime_component_item_delete(ref item);
            }
        }
        finally
        {
            Native.wasmtime_component_extern_delete(export);
        }
    }

    private static WitFunction Function(string? owner, string name, nint type)
    {
        var parameters = new List<WitCase>();
        var count = Native.wasmtime_component_func_type_param_count(type);
        for (nuint i = 0; i < count; i++)
        {
            if (Native.wasmtime_component_func_type_param_nth(type, i, out var paramName, out var length, out var valueType))
            {
                parameters.Add(new WitCase(Utf8(paramName, length), Take(ref valueType)));
            }
        }

        WitType? result = Native.wasmtime_component_func_type_result(type, out var resultType) ? Take(ref resultType) : null;
        return new WitFunction(owner, name, parameters, result);
    }

    /// <summary>Copies a native value type into a <see cref="WitType"/> and frees the native one.</summary>
    private static WitType Take(ref ValType type)
    {
        try
        {
            return Convert(type);
        }
        finally
        {
            Native.wasmtime_component_valtype_delete(ref type);
        }
    }

    private static WitType Convert(ValType type)
    {
        var kind = (WitKind)type.Kind;
        var of = type.Pointer;
        switch (kind)
        {
            case WitKind.List:
                Native.wasmtime_component_list_type_element(of, out var element);
                return new WitType(kind) { Element = Take(ref element) };
            case WitKind.Option:
                Native.wasmtime_component_option_type_ty(of, out var inner);
                return new WitType(kind) { Element = Take(ref inner) };
            case WitKind.Result:
                return new WitType(kind)
                {
                    Ok = Native.wasmtime_component_result_type_ok(of, out var ok) ? Take(ref ok) : null,
                    Err = Native.wasmtime_component_result_type_err(of, out var err) ? Take(ref err) : null,
                };
            case WitKind.Record:
                return new WitType(kind) { Cases = Cases(Native.wasmtime_component_record_type_field_count(of), n => Field(of, n)) };
            case WitKind.Tuple:
                return new WitType(kind) { Cases = Cases(Native.wasmtime_component_tuple_type_types_count(of), n => Member(of, n)) };
            case WitKind.Variant:
                return new WitType(kind) { Cases = Cases(Native.wasmtime_component_variant_type_case_count(of), n => VariantCase(of, n)) };
            case WitKind.Enum:
                return new WitType(kind) { Cases = Cases(Native.wasmtime_component_enum_type_names_count(of), n => EnumCase(of, n)) };
            case WitKind.Flags:
                return new WitType(kind) { Cases = Cases(Native.wasmtime_component_flags_type_names_count(of), n => Flag(of, n)) };
            default:
                // Primitives, and resources, futures, streams and newer kinds, which WAVE text cannot carry.
                return new WitType(kind);
        }
    }

    private static WitCase? Field(nint record, nuint nth) =>
        Native.wasmtime_component_record_type_field_nth(record, nth, out var name, out var length, out var field)
            ? new WitCase(Utf8(name, length), Take(ref field))
            : null;

    private static WitCase? Member(nint tuple, nuint nth) =>
        Native.wasmtime_component_tuple_type_types_nth(tuple, nth, out var member) ? new WitCase("", Take(ref member)) : null;

    private static WitCase? VariantCase(nint variant, nuint nth) =>
        Native.wasmtime_component_variant_type_case_nth(variant, nth, out var name, out var length, out var hasPayload, out var payload)
            ? new WitCase(Utf8(name, length), hasPayload ? Take(ref payload) : null)
            : null;

    private static WitCase? EnumCase(nint @enum, nuint nth) =>
        Native.wasmtime_component_enum_type_names_nth(@enum, nth, out var name, out var length) ? new WitCase(Utf8(name, length), null) : null;

    private static WitCase? Flag(nint flags, nuint nth) =>
        Native.wasmtime_component_flags_type_names_nth(flags, nth, out var name, out var length) ? new WitCase(Utf8(name, length), null) : null;

    private static List<WitCase> Cases(nuint count, Func<nuint, WitCase?> nth)
    {
        var cases = new List<WitCase>((int)count);
        for (nuint i = 0; i < count; i++)
        {
            if (nth(i) is { } item)
            {
                cases.Add(item);
            }
        }

        return cases;
    }

    private static string Utf8(nint pointer, nuint length) =>
        pointer == 0 ? "" : Marshal.PtrToStringUTF8(pointer, checked((int)length));

    private const byte ItemComponentInstance = 1;
    private const byte ItemComponentFunc = 3;

    /// <summary><c>wasmtime_component_valtype_t</c>: a one-byte kind, then a pointer-sized union.</summary>
    [StructLayout(LayoutKind.Explicit, Size = 16)]
    private struct ValType
    {
        [FieldOffset(0)]
        public byte Kind;

        [FieldOffset(8)]
        public nint Pointer;
    }

    /// <summary><c>wasmtime_component_item_t</c>: a one-byte kind, then a union as large as a value type.</summary>
    [StructLayout(LayoutKind.Explicit, Size = 24)]
    private struct Item
    {
        [FieldOffset(0)]
        public byte Kind;

        [FieldOffset(8)]
        public nint Pointer;
    }

    private static partial class Native
    {
        [LibraryImport(Library)]
        public static partial nint wasmtime_component_type(nint component);

        [LibraryImport(Library)]
        public static partial void wasmtime_component_type_delete(nint type);

        [LibraryImport(Library)]
        public static partial nuint wasmtime_component_type_export_count(nint type, nint engine);

        [LibraryImport(Library)]
        [return: MarshalAs(UnmanagedType.U1)]
        public static partial bool wasmtime_component_type_export_nth(nint type, nint engine, nuint nth, out nint name, out nuint nameLength, out nint export);

        [LibraryImport(Library)]
        public static partial void wasmtime_component_extern_type(nint export, out Item item);

        [LibraryImport(Library)]
        public static partial void wasmtime_component_extern_delete(nint export);

        [LibraryImport(Library)]
        public static partial void wasmtime_component_item_delete(ref Item item);

        [LibraryImport(Library)]
        public static partial nuint wasmtime_component_instance_type_export_count(nint type, nint engine);

        [LibraryImport(Library)]
        [return: MarshalAs(UnmanagedType.U1)]
        public static partial bool wasmtime_component_instance_type_export_nth(nint type, nint engine, nuint nth, out nint name, out nuint nameLength, out nint export);

        [LibraryImport(Library)]
        public static partial nuint wasmtime_component_func_type_param_count(nint type);

        [LibraryImport(Library)]
        [return: MarshalAs(UnmanagedType.U1)]
        public static partial bool wasmtime_component_func_type_param_nth(nint type, nuint nth, out nint name, out nuint nameLength, out ValType valueType);

        [LibraryImport(Library)]
        [return: MarshalAs(UnmanagedType.U1)]
        public static partial bool wasmtime_component_func_type_result(nint type, out ValType valueType);

        [LibraryImport(Library)]
        public static partial void wasmtime_component_valtype_delete(ref ValType valueType);

        [LibraryImport(Library)]
        public static partial void wasmtime_component_list_type_element(nint type, out ValType element);

        [LibraryImport(Library)]
        public static partial void wasmtime_component_option_type_ty(nint type, out ValType inner);

        [LibraryImport(Library)]
        [return: MarshalAs(UnmanagedType.U1)]
        public static partial bool wasmtime_component_result_type_ok(nint type, out ValType ok);

        [LibraryImport(Library)]
        [return: MarshalAs(UnmanagedType.U1)]
        public static partial bool wasmtime_component_result_type_err(nint type, out ValType err);

        [LibraryImport(Library)]
        public static partial nuint wasmtime_component_record_type_field_count(nint type);

        [LibraryImport(Library)]
        [return: MarshalAs(UnmanagedType.U1)]
        public static partial bool wasmtime_component_record_type_field_nth(nint type, nuint nth, out nint name, out nuint nameLength, out ValType field);

        [LibraryImport(Library)]
        public static partial nuint wasmtime_component_tuple_type_types_count(nint type);

        [LibraryImport(Library)]
        [return: MarshalAs(UnmanagedType.U1)]
        public static partial bool wasmtime_component_tuple_type_types_nth(nint type, nuint nth, out ValType member);

        [LibraryImport(Library)]
        public static partial nuint wasmtime_component_variant_type_case_count(nint type);

        [LibraryImport(Library)]
        [return: MarshalAs(UnmanagedType.U1)]
        public static partial bool wasmtime_component_variant_type_case_nth(
            nint type, nuint nth, out nint name, out nuint nameLength, [MarshalAs(UnmanagedType.U1)] out bool hasPayload, out ValType payload);

        [LibraryImport(Library)]
        public static partial nuint wasmtime_component_enum_type_names_count(nint type);

        [LibraryImport(Library)]
        [return: MarshalAs(UnmanagedType.U1)]
        public static partial bool wasmtime_component_enum_type_names_nth(nint type, nuint nth, out nint name, out nuint nameLength);

        [LibraryImport(Library)]
        public static partial nuint wasmtime_component_flags_type_names_count(nint type);

        [LibraryImport(Library)]
        [return: MarshalAs(UnmanagedType.U1)]
        public static partial bool wasmtime_component_flags_type_names_nth(nint type, nuint nth, out nint name, out nuint nameLength);
    }
}
