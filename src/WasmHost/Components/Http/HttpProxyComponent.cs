using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;
using Wasmtime;
using static Propeller.WasmHost.Components.Http.ComponentNative;

namespace Propeller.WasmHost.Components.Http;

/// <summary>
/// A <c>wasi:http/incoming-handler</c> component made servable (spec §2.11, ADR 0015): a component linker of its own that
/// defines the host side of the <c>wasi:http/proxy</c> world this proplet implements (<see cref="WasiProxyWorld"/>) with
/// host-dynamic resource types through Wasmtime's C API, every other import the component has linked as a function that
/// traps with "unknown import … has not been defined", and the <c>handle</c> export found once. <see cref="Handle"/> runs
/// one request on a fresh instance in the store it is given (the caller's limits apply there).
/// </summary>
public sealed unsafe class HttpProxyComponent : IDisposable
{

    [ThreadStatic]
    private static HttpProxyCall? t_current;

    private readonly CompiledComponent _component;
    private readonly SafeHandle _componentHandle;
    private readonly nint _linker;
    private readonly nint _handleIndex;
    private bool _disposed;

    private HttpProxyComponent(CompiledComponent component, SafeHandle componentHandle, nint linker, nint handleIndex)
    {
        _component = component;
        _componentHandle = componentHandle;
        _linker = linker;
        _handleIndex = handleIndex;
    }

    /// <summary>
    /// Links <paramref name="component"/> for serving; an <see cref="InvalidOperationException"/> with Wasmtime's text when
    /// it does not export <c>wasi:http/incoming-handler.handle</c> or cannot be linked.
    /// </summary>
    public static HttpProxyComponent Create(Engine engine, CompiledComponent component)
    {
        ArgumentNullException.ThrowIfNull(engine);
        ArgumentNullException.ThrowIfNull(component);
        var handle = component.Functions.FirstOrDefault(f => f.Name == "handle" && f.Interface?.StartsWith("wasi:http/incoming-handler@", StringComparison.Ordinal) == true)
            ?? throw new InvalidOperationException("the component does not export wasi:http/incoming-handler#handle");
        var componentHandle = WasmtimeHandles.Of(component.Component);
        var engineHandle = WasmtimeHandles.Of(engine);
        var linker = wasmtime_component_linker_new(engineHandle.DangerousGetHandle());
        try
        {
            WasiProxyWorld.Define(linker, &Dispatch, &Destructor);
            Check(wasmtime_component_linker_define_unknown_imports_as_traps(linker, componentHandle.DangerousGetHandle()));

            // Export indices are the component's, valid for each of its instances; they are kept for its life. (Deleting one
            // aborted the process in session 6's host-resource probe, so none is deleted: two small allocations per served task.)
            var iface = ExportIndex(componentHandle.DangerousGetHandle(), 0, handle.Interface!);
            var index = ExportIndex(componentHandle.DangerousGetHandle(), iface, handle.Name);
            GC.KeepAlive(engine);
            return new HttpProxyComponent(component, componentHandle, linker, index);
        }
        catch
        {
            wasmtime_component_linker_delete(linker);
            throw;
        }
    }

    /// <summary>
    /// Serves <paramref name="request"/> on a fresh instance in <paramref name="store"/> (a store of this component's engine
    /// used for nothing else). A trap, a host function's error or a missing response is a <see cref="HttpProxyResponse.Failed"/>.
    /// </summary>
    public HttpProxyResponse Handle(Store store, HttpProxyRequest request, HttpProxyOptions options)
    {
        ArgumentNullException.ThrowIfNull(store);
        ObjectDisposedException.ThrowIf(_disposed, this);
        var call = new HttpProxyCall(request, options);
        var response = Run(store, call);
        return response.Error is null || call.Stderr.WrittenCount == 0
            ? response
            : response with { Stderr = Encoding.UTF8.GetString(call.Stderr.WrittenSpan) };
    }

    private HttpProxyResponse Run(Store store, HttpProxyCall call)
    {
        var request = call.Request;
        var storeHandle = WasmtimeHandles.Of(store);
        var added = false;
        var previous = t_current;
        var arguments = stackalloc Val[2];
        try
        {
            storeHandle.DangerousAddRef(ref added);
            var context = wasmtime_store_context(storeHandle.DangerousGetHandle());
            call.Context = context;
            t_current = call;
            ComponentNative.Handle instance;
            var error = wasmtime_component_linker_instantiate(_linker, context, _componentHandle.DangerousGetHandle(), &instance);
            if (error != 0)
            {
                return HttpProxyResponse.Failed($"Failed to instantiate the HTTP proxy component: {WasmErrors.Reason(TakeMessage(error))}");
            }

            ComponentNative.Handle function;
            if (!wasmtime_component_instance_get_func(&instance, context, _handleIndex, &function))
            {
                return HttpProxyResponse.Failed("the component's wasi:http/incoming-handler#handle is not a function");
            }

            arguments[0] = call.New(new WasiResources.IncomingRequest(request), WasiResources.Type.IncomingRequest);
            arguments[1] = call.New(new WasiResources.ResponseOutparam(), WasiResources.Type.ResponseOutparam);
            error = wasmtime_component_func_call(&function, context, arguments, 2, null, 0);
            if (error != 0)
            {
                return HttpProxyResponse.Failed(WasmErrors.Reason(TakeMessage(error)));
            }

            if (call.Response is not { } response)
            {
                return HttpProxyResponse.Failed(call.ResponseError is { } code
                    ? $"the component answered with error-code {code}"
                    : "the component returned from handle without setting a response");
            }

            if (response.Body is { Failure: { } failure })
            {
                // A write to the body failed (its limit): whatever the guest wrote after, the body misses bytes.
                return HttpProxyResponse.Failed(failure);
            }

            if (response.Body is { Finished: false })
            {
                // wasi:http: an outgoing-body dropped (or left) without outgoing-body.finish is corrupted, not complete.
                // Nothing has been sent yet (the response goes out whole), so the client gets an error, not a cut body.
                return HttpProxyResponse.Failed("the component did not call outgoing-body.finish: the response body is incomplete");
            }

            return new HttpProxyResponse(response.Status, [.. response.Headers.Entries], response.Body?.Data.WrittenSpan.ToArray() ?? [], null);
        }
        finally
        {
            for (var i = 0; i < 2; i++)
            {
                if (arguments[i].Kind == KindResource && arguments[i].A != 0)
                {
                    wasmtime_component_resource_any_delete(arguments[i].A);
                }
            }

            t_current = previous;
            if (added)
            {
                storeHandle.DangerousRelease();
            }
        }
    }

    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        wasmtime_component_linker_delete(_linker);
        GC.KeepAlive(_component);
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static nint Dispatch(nint data, nint context, nint type, Val* arguments, nuint count, Val* results, nuint resultCount)
    {
        var import = WasiProxyWorld.Functions[(int)data];

        // Wasmtime links a func_new function to whatever type the guest declared for the import and passes that many
        // arguments and result slots (none: a dangling pointer), so a component built against another signature must be
        // refused here, before the function reads an argument or writes a result that is not there.
        if (count != (nuint)import.Parameters || resultCount != (nuint)import.Results)
        {
            return NewError($"import {import.Name}: signature mismatch: the component declared it with {count} parameter(s) and "
                + $"{resultCount} result(s); this host implements it with {import.Parameters} and {import.Results}");
        }

        try
        {
            var call = t_current ?? throw new InvalidOperationException("wasi:http host function called outside a request");
            call.Context = context;
            import.Function(call, arguments, results);
            return 0;
        }
        catch (ImportSignatureException ex)
        {
            return NewError($"import {import.Name}: signature mismatch: {ex.Message}");
        }
#pragma warning disable CA1031 // Every failure of a host function becomes the guest's trap, never a crash of the proplet.
        catch (Exception ex)
#pragma warning restore CA1031
        {
            return NewError(ex.Message);
        }
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static nint Destructor(nint data, nint context, uint rep)
    {
        t_current?.Drop(rep);
        return 0;
    }

    private static nint ExportIndex(nint component, nint parent, string name)
    {
        var utf8 = Encoding.UTF8.GetBytes(name);
        fixed (byte* p = utf8)
        {
            var index = wasmtime_component_get_export_index(component, parent, p, (nuint)utf8.Length);
            return index != 0 ? index : throw new InvalidOperationException($"the component has no export {name}");
        }
    }

    private static void Check(nint error)
    {
        if (error != 0)
        {
            throw new InvalidOperationException(WasmErrors.Reason(TakeMessage(error)));
        }
    }

}
