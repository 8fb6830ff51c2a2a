using System.Reflection;
using System.Runtime.InteropServices;
using Wasmtime;
using Wasmtime.Components;

namespace Propeller.WasmHost.Components;

/// <summary>
/// The native handles Wasmtime.Dotnet keeps internal (its <c>NativeHandle</c> properties), read through reflection in this
/// one place for the C API bindings (component types, ADR 0011; the wasi:http host, ADR 0015). A wrapper upgrade that
/// renames them fails here, at first use, naming the member.
/// </summary>
internal static class WasmtimeHandles
{
    private static readonly PropertyInfo ComponentProperty = NativeHandleOf(typeof(Component));
    private static readonly PropertyInfo EngineProperty = NativeHandleOf(typeof(Engine));
    private static readonly PropertyInfo StoreProperty = NativeHandleOf(typeof(Store));

    public static SafeHandle Of(Component component) => (SafeHandle)ComponentProperty.GetValue(component)!;

    public static SafeHandle Of(Engine engine) => (SafeHandle)EngineProperty.GetValue(engine)!;

    public static SafeHandle Of(Store store) => (SafeHandle)StoreProperty.GetValue(store)!;

    private static PropertyInfo NativeHandleOf(Type type) =>
        type.GetProperty("NativeHandle", BindingFlags.Instance | BindingFlags.NonPublic)
        ?? throw new MissingMemberException(type.FullName, "NativeHandle");
}
