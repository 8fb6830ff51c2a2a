using System.Buffers;
using System.Diagnostics;
using static Propeller.WasmHost.Components.Http.ComponentNative;

namespace Propeller.WasmHost.Components.Http;

/// <summary>
/// One request's state while its fresh instance runs <c>handle</c>: the resource table (rep = index + 1; a freed slot is
/// reused, as Wasmtime's own tables reuse a dropped handle's index, so a create/drop loop does not grow it), the request, the
/// response once <c>response-outparam.set</c> gave one, and the bounded stdout/stderr the guest wrote. It is the store's
/// data, so host functions find it from the store context they are called with.
/// </summary>
internal sealed unsafe class HttpProxyCall(HttpProxyRequest request, HttpProxyOptions options)
{
    /// <summary>stdout and stderr of one request are kept up to this many bytes each (for the log on a failure).</summary>
    public const int OutputLimit = 64 << 10;

    /// <summary>
    /// The most bytes of header fields (<see cref="WasiResources.Fields.Size"/>) a request holds at once: 4 MiB, 32
    /// fields objects at their 128 KiB cap. Each object is capped, but cloning one (or asking for the request's headers,
    /// a copy each time) and holding every copy would multiply it by the handle limit (65,536 × 128 KiB = 8 GiB).
    /// </summary>
    public const long FieldBytesLimit = 4 << 20;

    private readonly List<object?> _resources = [];
    private readonly Stack<int> _free = new();
    private long _fieldBytes;

    public HttpProxyRequest Request { get; } = request;

    public HttpProxyOptions Options { get; } = options;

    public nint Context { get; set; }

    public WasiResources.OutgoingResponse? Response { get; set; }

    /// <summary>The error-code the guest set instead of a response.</summary>
    public string? ResponseError { get; set; }

    public ArrayBufferWriter<byte> Stdout { get; } = new();

    public ArrayBufferWriter<byte> Stderr { get; } = new();

    /// <summary>wasi:clocks/monotonic-clock's time: nanoseconds from an arbitrary start.</summary>
    public static ulong Now() => (ulong)(Stopwatch.GetTimestamp() * (1_000_000_000.0 / Stopwatch.Frequency));

    /// <summary>A new <c>own</c> handle for <paramref name="resource"/>, as a component value.</summary>
    public Val New(object resource, WasiResources.Type type)
    {
        if (!_free.TryPop(out var index))
        {
            // No free slot: every slot holds a live resource, so the table's size is what the guest holds at once.
            if (_resources.Count >= Options.ResourceLimit)
            {
                throw new InvalidOperationException($"the component holds more than {Options.ResourceLimit} wasi:http resources at once");
            }

            index = _resources.Count;
            _resources.Add(null);
        }

        _resources[index] = resource;
        var host = wasmtime_component_resource_host_new(owned: true, (uint)index + 1, (uint)type);
        try
        {
            nint any;
            var error = wasmtime_component_resource_host_to_any(Context, host, &any);
            if (error != 0)
            {
                Free(index);
                throw new InvalidOperationException(TakeMessage(error));
            }

            return new Val { Kind = KindResource, A = any };
        }
        finally
        {
            wasmtime_component_resource_host_delete(host);
        }
    }

    /// <summary>The object behind a <c>borrow</c> (or <c>own</c>, kept in the table) handle argument.</summary>
    public T Get<T>(Val* value)
        where T : class => Lookup<T>(value, take: false);

    /// <summary>The object behind an <c>own</c> handle argument, which now belongs to the host: its slot is freed.</summary>
    public T Take<T>(Val* value)
        where T : class => Lookup<T>(value, take: true);

    /// <summary>The guest dropped its handle with this rep. Fields no longer held stop counting against the budget: its
    /// own, or a response's (the fields its constructor took; they were counted for the rest of the request, so a handler
    /// that built and dropped responses in a loop trapped at the budget while it held almost nothing).</summary>
    public void Drop(uint rep)
    {
        if (rep >= 1 && rep <= _resources.Count && _resources[(int)rep - 1] is { } resource)
        {
            if (resource is WasiResources.Fields fields)
            {
                Release(fields);
            }
            else if (resource is WasiResources.OutgoingResponse response)
            {
                Release(response.Headers);
            }

            Free((int)rep - 1);
        }
    }

    /// <summary>Counts <paramref name="bytes"/> more of <paramref name="fields"/> against <see cref="FieldBytesLimit"/>
    /// (fewer when negative); past it the guest traps.</summary>
    public void Charge(WasiResources.Fields fields, long bytes)
    {
        if (!fields.Charged)
        {
            return;
        }

        if (bytes > 0 && _fieldBytes + bytes > FieldBytesLimit)
        {
            throw new InvalidOperationException($"the component holds more than {FieldBytesLimit} bytes of header fields at once");
        }

        _fieldBytes += bytes;
    }

    /// <summary>A fields object is gone (dropped, or taken and ignored): its size no longer counts.</summary>
    public void Release(WasiResources.Fields fields) => Charge(fields, -fields.Size);

    private T Lookup<T>(Val* value, bool take)
        where T : class
    {
        if (value is null || value->Kind != KindResource)
        {
            throw ComponentValues.Mismatch(take ? "own resource" : "resource", value);
        }

        if (take && !wasmtime_component_resource_any_owned(value->A))
        {
            throw ComponentValues.Mismatch("own resource", value);
        }

        nint host;
        var error = wasmtime_component_resource_any_to_host(Context, value->A, &host);
        if (error != 0)
        {
            throw new InvalidOperationException(TakeMessage(error));
        }

        var rep = wasmtime_component_resource_host_rep(host);
        wasmtime_component_resource_host_delete(host);
        if (rep < 1 || rep > _resources.Count || _resources[(int)rep - 1] is not T resource)
        {
            throw new InvalidOperationException($"unknown {typeof(T).Name} handle (rep {rep})");
        }

        if (take)
        {
            Free((int)rep - 1);
        }

        return resource;
    }

    /// <summary>Empties a slot that held a resource (never one already free, so no slot is handed out twice).</summary>
    private void Free(int index)
    {
        _resources[index] = null;
        _free.Push(index);
    }
}
