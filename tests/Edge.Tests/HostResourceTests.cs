using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;

namespace Propeller.Edge.Tests;

/// <summary>
/// The foundation HTTP proxy components need (ADR 0011, docs/compatibility.md): host-defined component resources through
/// Wasmtime 50's C API, which Wasmtime.Dotnet 50.0.1 does not wrap. A resource type is defined on a component linker, the
/// host makes an <c>own</c> handle (its rep is the host's key), passes it to a guest export, the guest calls a host method
/// with a <c>borrow</c> and then drops it, and the host's destructor sees the rep. Serving wasi:http means defining its
/// types (and the wasi:io streams they share) this way; a Wasmtime upgrade that breaks the contract fails here first.
/// </summary>
public sealed unsafe partial class HostResourceTests
{
    private const string Library = "wasmtime";
    private const uint ThingType = 7;
    private const byte KindU32 = 6;
    private const byte KindResource = 21;

    private const string Text = """
        (component
          (import "test:res/host" (instance $host
            (export "thing" (type $thing (sub resource)))
            (export "[method]thing.value" (func (param "self" (borrow $thing)) (result u32)))))
          (alias export $host "thing" (type $thing))
          (alias export $host "[method]thing.value" (func $value))
          (core func $value-core (canon lower (func $value)))
          (core func $drop (canon resource.drop $thing))
          (core module $m
            (import "host" "value" (func $value (param i32) (result i32)))
            (import "host" "drop" (func $drop (param i32)))
            (func (export "run") (param $h i32) (result i32)
              (local $v i32)
              (local.set $v (i32.add (call $value (local.get $h)) (i32.const 1)))
              (call $drop (local.get $h))
              (local.get $v)))
          (core instance $i (instantiate $m (with "host" (instance (export "value" (func $value-core)) (export "drop" (func $drop))))))
          (func (export "run") (param "t" (own $thing)) (result u32) (canon lift (core func $i "run"))))
        """;

    [ThreadStatic]
    private static List<string>? t_calls;

    [Fact]
    public void GivenAHostResourceType_WhenAnOwnHandleIsPassedToTheGuest_ThenItsMethodsAndDestructorReachTheHostWithTheRep()
    {
        t_calls = [];
        var bytes = Wasmtime.Module.ConvertText(Text);
        var engine = wasm_engine_new();
        var store = wasmtime_store_new(engine, 0, 0);
        var type = wasmtime_component_resource_type_new_host(ThingType);
        nint component = 0, linker = 0, resource = 0, any = 0;
        try
        {
            var context = wasmtime_store_context(store);
            fixed (byte* b = bytes)
            {
                Check(wasmtime_component_new(engine, b, (nuint)bytes.Length, &component));
            }

            linker = wasmtime_component_linker_new(engine);
            var root = wasmtime_component_linker_root(linker);
            var host = AddInstance(root, "test:res/host");
            Check(WithName("thing", (p, n) => wasmtime_component_linker_instance_add_resource(host, p, n, type, &Destructor, 0, 0)));
            Check(WithName("[method]thing.value", (p, n) => wasmtime_component_linker_instance_add_func(host, p, n, &Value, 0, 0)));
            wasmtime_component_linker_instance_delete(host);
            wasmtime_component_linker_instance_delete(root);

            ComponentHandle instance;
            Check(wasmtime_component_linker_instantiate(linker, context, component, &instance));
            nint index;
            var run8 = Encoding.UTF8.GetBytes("run");
            fixed (byte* p = run8)
            {
                index = wasmtime_component_instance_get_export_index(&instance, context, 0, (nint)p, (nuint)run8.Length);
            }

            ComponentHandle run;
            wasmtime_component_instance_get_func(&instance, context, index, &run).ShouldBeTrue();
            // Not freed: wasmtime_component_export_index_delete on this index aborted the process ("munmap_chunk(): invalid
            // pointer") in a stand-alone probe; a few bytes per lookup, to be understood before a product binding uses it.

            resource = wasmtime_component_resource_host_new(owned: true, rep: 41, ty: ThingType);
            Check(wasmtime_component_resource_host_to_any(context, resource, &any));
            var argument = new Val { Kind = KindResource, Payload = any };
            var result = default(Val);
            Check(wasmtime_component_func_call(&run, context, &argument, 1, &result, 1));

            result.Kind.ShouldBe(KindU32);
            ((uint)result.Payload).ShouldBe(42u);
            t_calls.ShouldBe(["value(borrow, rep 41)", "drop(rep 41)"]);
        }
        finally
        {
            if (any != 0)
            {
                wasmtime_component_resource_any_delete(any);
            }

            if (resource != 0)
            {
                wasmtime_component_resource_host_delete(resource);
            }

            if (linker != 0)
            {
                wasmtime_component_linker_delete(linker);
            }

            if (component != 0)
            {
                wasmtime_component_delete(component);
            }

            wasmtime_component_resource_type_delete(type);
            wasmtime_store_delete(store);
            wasm_engine_delete(engine);
        }
    }

    private static nint AddInstance(nint parent, string name)
    {
        nint added = 0;
        var utf8 = Encoding.UTF8.GetBytes(name);
        fixed (byte* p = utf8)
        {
            Check(wasmtime_component_linker_instance_add_instance(parent, p, (nuint)utf8.Length, &added));
        }

        return added;
    }

    private static T WithName<T>(string name, Func<nint, nuint, T> use)
    {
        var utf8 = Encoding.UTF8.GetBytes(name);
        fixed (byte* p = utf8)
        {
            return use((nint)p, (nuint)utf8.Length);
        }
    }

    private static void Check(nint error)
    {
        if (error != 0)
        {
            ByteVec message;
            wasmtime_error_message(error, &message);
            var text = Encoding.UTF8.GetString((byte*)message.Data, (int)message.Size);
            wasm_byte_vec_delete(&message);
            wasmtime_error_delete(error);
            throw new InvalidOperationException(text);
        }
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static nint Destructor(nint data, nint context, uint rep)
    {
        t_calls?.Add($"drop(rep {rep})");
        return 0;
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static nint Value(nint data, nint context, nint type, Val* arguments, nuint count, Val* results, nuint resultCount)
    {
        nint host;
        var error = wasmtime_component_resource_any_to_host(context, arguments[0].Payload, &host);
        if (error != 0)
        {
            return error;
        }

        var rep = wasmtime_component_resource_host_rep(host);
        t_calls?.Add($"value({(wasmtime_component_resource_host_owned(host) ? "own" : "borrow")}, rep {rep})");
        wasmtime_component_resource_host_delete(host);
        results[0] = new Val { Kind = KindU32, Payload = (nint)rep };
        return 0;
    }

    /// <summary><c>wasmtime_component_instance_t</c> and <c>wasmtime_component_func_t</c>: store id and index.</summary>
    [StructLayout(LayoutKind.Sequential)]
    private struct ComponentHandle
    {
        public ulong StoreId;
        public nuint Index;
    }

    /// <summary><c>wasmtime_component_val_t</c>: a kind byte, then a 24-byte union (the variant case is the largest).</summary>
    [StructLayout(LayoutKind.Explicit, Size = 32)]
    private struct Val
    {
        [FieldOffset(0)]
        public byte Kind;

        [FieldOffset(8)]
        public nint Payload;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct ByteVec
    {
        public nuint Size;
        public nint Data;
    }

    [LibraryImport(Library)]
    private static partial nint wasm_engine_new();

    [LibraryImport(Library)]
    private static partial void wasm_engine_delete(nint engine);

    [LibraryImport(Library)]
    private static partial nint wasmtime_store_new(nint engine, nint data, nint finalizer);

    [LibraryImport(Library)]
    private static partial void wasmtime_store_delete(nint store);

    [LibraryImport(Library)]
    private static partial nint wasmtime_store_context(nint store);

    [LibraryImport(Library)]
    private static partial nint wasmtime_component_new(nint engine, byte* bytes, nuint length, nint* component);

    [LibraryImport(Library)]
    private static partial void wasmtime_component_delete(nint component);

    [LibraryImport(Library)]
    private static partial nint wasmtime_component_linker_new(nint engine);

    [LibraryImport(Library)]
    private static partial void wasmtime_component_linker_delete(nint linker);

    [LibraryImport(Library)]
    private static partial nint wasmtime_component_linker_root(nint linker);

    [LibraryImport(Library)]
    private static partial nint wasmtime_component_linker_instance_add_instance(nint instance, byte* name, nuint length, nint* added);

    [LibraryImport(Library)]
    private static partial nint wasmtime_component_linker_instance_add_resource(
        nint instance, nint name, nuint length, nint type, delegate* unmanaged[Cdecl]<nint, nint, uint, nint> destructor, nint data, nint finalizer);

    [LibraryImport(Library)]
    private static partial nint wasmtime_component_linker_instance_add_func(
        nint instance, nint name, nuint length, delegate* unmanaged[Cdecl]<nint, nint, nint, Val*, nuint, Val*, nuint, nint> callback, nint data, nint finalizer);

    [LibraryImport(Library)]
    private static partial void wasmtime_component_linker_instance_delete(nint instance);

    [LibraryImport(Library)]
    private static partial nint wasmtime_component_linker_instantiate(nint linker, nint context, nint component, ComponentHandle* instance);

    [LibraryImport(Library)]
    private static partial nint wasmtime_component_instance_get_export_index(ComponentHandle* instance, nint context, nint parent, nint name, nuint length);

    [LibraryImport(Library)]
    [return: MarshalAs(UnmanagedType.U1)]
    private static partial bool wasmtime_component_instance_get_func(ComponentHandle* instance, nint context, nint index, ComponentHandle* function);

    [LibraryImport(Library)]
    private static partial nint wasmtime_component_func_call(ComponentHandle* function, nint context, Val* arguments, nuint count, Val* results, nuint resultCount);

    [LibraryImport(Library)]
    private static partial nint wasmtime_component_resource_type_new_host(uint type);

    [LibraryImport(Library)]
    private static partial void wasmtime_component_resource_type_delete(nint type);

    [LibraryImport(Library)]
    private static partial nint wasmtime_component_resource_host_new([MarshalAs(UnmanagedType.U1)] bool owned, uint rep, uint ty);

    [LibraryImport(Library)]
    private static partial void wasmtime_component_resource_host_delete(nint resource);

    [LibraryImport(Library)]
    private static partial uint wasmtime_component_resource_host_rep(nint resource);

    [LibraryImport(Library)]
    [return: MarshalAs(UnmanagedType.U1)]
    private static partial bool wasmtime_component_resource_host_owned(nint resource);

    [LibraryImport(Library)]
    private static partial nint wasmtime_component_resource_host_to_any(nint context, nint resource, nint* any);

    [LibraryImport(Library)]
    private static partial nint wasmtime_component_resource_any_to_host(nint context, nint any, nint* host);

    [LibraryImport(Library)]
    private static partial void wasmtime_component_resource_any_delete(nint any);

    [LibraryImport(Library)]
    private static partial void wasmtime_error_message(nint error, ByteVec* message);

    [LibraryImport(Library)]
    private static partial void wasmtime_error_delete(nint error);

    [LibraryImport(Library)]
    private static partial void wasm_byte_vec_delete(ByteVec* vector);
}
