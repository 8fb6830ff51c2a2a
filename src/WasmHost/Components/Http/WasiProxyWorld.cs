using System.Text;
using static Propeller.WasmHost.Components.Http.ComponentNative;
using R = Propeller.WasmHost.Components.Http.WasiResources;

namespace Propeller.WasmHost.Components.Http;

/// <summary>
/// The host side of the <c>wasi:http/proxy@0.2</c> world that an incoming handler uses (ADR 0015), defined on a component
/// linker through Wasmtime's C API: wasi:http/types (fields, incoming request and body, outgoing response and body,
/// response-outparam, future-trailers), the wasi:io error/poll/streams they hand out, and the wasi:cli
/// environment/exit/std streams, wasi:clocks and wasi:random a toolchain's runtime imports beside them. They cannot come
/// from <c>wasmtime_component_linker_add_wasip2</c>: its streams and pollables are Rust-typed resources that these
/// host-dynamic ones never equal, so one of its <c>get-stdout</c> would not link with our <c>output-stream</c>.
/// Interfaces are defined at 0.2.0; Wasmtime's semver matching serves every 0.2.x import with them. Outgoing requests
/// (outgoing-handler, outgoing-request, request-options, incoming-response) are not implemented: the component links,
/// and calling one traps with "unknown import … has not been defined".
/// </summary>
internal static unsafe partial class WasiProxyWorld
{
    public const string Version = "@0.2.0";

    /// <summary>A host function: arguments and results as Wasmtime passes them; a throw traps the guest with its message.</summary>
    public delegate void HostFunction(HttpProxyCall call, Val* arguments, Val* results);

    /// <summary>
    /// A host function with the import it serves (<c>interface#name</c>) and the number of parameters and results its WIT
    /// signature has. Wasmtime does not check a <c>func_new</c> function against the type the guest declared for the
    /// import: it passes as many arguments and result slots as the guest's type has, so the dispatcher checks the counts
    /// and every argument accessor checks the kind before a host function reads anything.
    /// </summary>
    public sealed record Import(string Name, int Parameters, int Results, HostFunction Function);

    private static readonly string[] Methods = ["get", "head", "post", "put", "delete", "connect", "options", "trace", "patch"];

    private static readonly List<Import> s_functions = [];

    private static readonly (string Name, (string Name, R.Type Type)[] Resources, (string Name, int Id)[] Functions)[] s_interfaces =
    [
        Interface("wasi:io/error", [("error", R.Type.Error)], IoError()),
        Interface("wasi:io/poll", [("pollable", R.Type.Pollable)], Poll()),
        Interface("wasi:io/streams", [("input-stream", R.Type.InputStream), ("output-stream", R.Type.OutputStream), ("error", R.Type.Error), ("pollable", R.Type.Pollable)], Streams()),
        Interface(
            "wasi:http/types",
            [
                ("fields", R.Type.Fields), ("incoming-request", R.Type.IncomingRequest), ("response-outparam", R.Type.ResponseOutparam),
                ("incoming-body", R.Type.IncomingBody), ("future-trailers", R.Type.FutureTrailers), ("outgoing-response", R.Type.OutgoingResponse),
                ("outgoing-body", R.Type.OutgoingBody), ("input-stream", R.Type.InputStream), ("output-stream", R.Type.OutputStream),
                ("io-error", R.Type.Error), ("pollable", R.Type.Pollable),
            ],
            HttpTypes()),
        Interface("wasi:cli/environment", [], Environment()),
        Interface("wasi:cli/exit", [], Exit()),
        Interface("wasi:cli/stdin", [("input-stream", R.Type.InputStream)], [("get-stdin", 0, 1, (c, a, r) => r[0] = c.New(new R.InputStream([]), R.Type.InputStream))]),
        Interface("wasi:cli/stdout", [("output-stream", R.Type.OutputStream)], [("get-stdout", 0, 1, (c, a, r) => r[0] = c.New(new R.OutputStream(c.Stdout, HttpProxyCall.OutputLimit, "stdout", truncates: true), R.Type.OutputStream))]),
        Interface("wasi:cli/stderr", [("output-stream", R.Type.OutputStream)], [("get-stderr", 0, 1, (c, a, r) => r[0] = c.New(new R.OutputStream(c.Stderr, HttpProxyCall.OutputLimit, "stderr", truncates: true), R.Type.OutputStream))]),
        Interface("wasi:clocks/monotonic-clock", [("pollable", R.Type.Pollable)], MonotonicClock()),
        Interface("wasi:clocks/wall-clock", [], WallClock()),
        Interface("wasi:random/random", [], Random("get-random-bytes", "get-random-u64", secure: true)),
        Interface("wasi:random/insecure", [], Random("get-insecure-random-bytes", "get-insecure-random-u64", secure: false)),
        Interface("wasi:random/insecure-seed", [], [("insecure-seed", 0, 1, (c, a, r) => r[0] = ComponentValues.Tuple(ComponentValues.U64(NextU64(false)), ComponentValues.U64(NextU64(false))))]),
    ];

    /// <summary>The host functions by id (the <c>data</c> each is registered with).</summary>
    public static IReadOnlyList<Import> Functions => s_functions;

    /// <summary>Every interface, resource and function above, defined on <paramref name="linker"/>.</summary>
    public static void Define(
        nint linker,
        delegate* unmanaged[Cdecl]<nint, nint, nint, Val*, nuint, Val*, nuint, nint> dispatch,
        delegate* unmanaged[Cdecl]<nint, nint, uint, nint> destructor)
    {
        var types = new Dictionary<R.Type, nint>();
        var root = wasmtime_component_linker_root(linker);
        try
        {
            foreach (var (name, resources, functions) in s_interfaces)
            {
                var instance = AddInstance(root, name + Version);
                try
                {
                    foreach (var (resource, type) in resources)
                    {
                        if (!types.TryGetValue(type, out var handle))
                        {
                            types[type] = handle = wasmtime_component_resource_type_new_host((uint)type);
                        }

                        WithName(resource, (p, n) => Check(wasmtime_component_linker_instance_add_resource(instance, p, n, handle, destructor, (nint)type, 0)));
                    }

                    foreach (var (function, id) in functions)
                    {
                        WithName(function, (p, n) => Check(wasmtime_component_linker_instance_add_func(instance, p, n, dispatch, id, 0)));
                    }
                }
                finally
                {
                    wasmtime_component_linker_instance_delete(instance);
                }
            }
        }
        finally
        {
            wasmtime_component_linker_instance_delete(root);
            foreach (var handle in types.Values)
            {
                wasmtime_component_resource_type_delete(handle);
            }
        }
    }

    private static (string, (string, R.Type)[], (string, int)[]) Interface(
        string name, (string, R.Type)[] resources, (string Name, int Parameters, int Results, HostFunction Function)[] functions)
    {
        var ids = new (string, int)[functions.Length];
        for (var i = 0; i < functions.Length; i++)
        {
            var (function, parameters, results, body) = functions[i];
            ids[i] = (function, s_functions.Count);
            s_functions.Add(new Import($"{name}{Version}#{function}", parameters, results, body));
        }

        return (name, resources, ids);
    }

    private static nint AddInstance(nint parent, string name)
    {
        nint instance = 0;
        var utf8 = Encoding.UTF8.GetBytes(name);
        fixed (byte* p = utf8)
        {
            Check(wasmtime_component_linker_instance_add_instance(parent, p, (nuint)utf8.Length, &instance));
        }

        return instance;
    }

    private delegate void NameUse(byte* name, nuint length);

    private static void WithName(string name, NameUse use)
    {
        var utf8 = Encoding.UTF8.GetBytes(name);
        fixed (byte* p = utf8)
        {
            use(p, (nuint)utf8.Length);
        }
    }

    private static void Check(nint error)
    {
        if (error != 0)
        {
            throw new InvalidOperationException(TakeMessage(error));
        }
    }
}
