using static Propeller.WasmHost.Components.Http.ComponentNative;
using static Propeller.WasmHost.Components.Http.ComponentValues;
using R = Propeller.WasmHost.Components.Http.WasiResources;

namespace Propeller.WasmHost.Components.Http;

/// <summary>wasi:http/types for an incoming handler: the request side read-only, the response side buffered until
/// <c>handle</c> returns (the server then sends it whole).</summary>
internal static unsafe partial class WasiProxyWorld
{
    private static (string, int, int, HostFunction)[] HttpTypes() =>
    [
        ("[constructor]fields", 0, 1, (c, a, r) => r[0] = c.New(new R.Fields([], immutable: false), R.Type.Fields)),
        ("[static]fields.from-list", 1, 1, FieldsFromList),
        ("[method]fields.get", 2, 1, (c, a, r) => r[0] = FieldValues(c.Get<R.Fields>(a), String(a + 1))),
        ("[method]fields.has", 2, 1, (c, a, r) => r[0] = Bool(c.Get<R.Fields>(a).Entries.Exists(e => SameName(e.Key, String(a + 1))))),
        ("[method]fields.set", 3, 1, FieldsSet),
        ("[method]fields.delete", 2, 1, FieldsDelete),
        ("[method]fields.append", 3, 1, FieldsAppend),
        ("[method]fields.entries", 1, 1, (c, a, r) => r[0] = Entries(c.Get<R.Fields>(a))),
        ("[method]fields.clone", 1, 1, (c, a, r) => r[0] = NewFields(c, new R.Fields([.. c.Get<R.Fields>(a).Entries], immutable: false))),
        ("[method]incoming-request.method", 1, 1, (c, a, r) => r[0] = Method(c.Get<R.IncomingRequest>(a).Request.Method)),
        ("[method]incoming-request.path-with-query", 1, 1, (c, a, r) => r[0] = Some(String(c.Get<R.IncomingRequest>(a).Request.PathWithQuery))),
        ("[method]incoming-request.scheme", 1, 1, (c, a, r) => r[0] = Some(Scheme(c.Get<R.IncomingRequest>(a).Request.Scheme))),
        ("[method]incoming-request.authority", 1, 1, (c, a, r) => r[0] = Some(String(c.Get<R.IncomingRequest>(a).Request.Authority))),
        ("[method]incoming-request.headers", 1, 1, (c, a, r) =>
        {
            // Without the forbidden ones, as Wasmtime's incoming request (FieldMap::new_immutable) strips them.
            var headers = c.Get<R.IncomingRequest>(a).Request.Headers.Where(h => !Forbidden.Contains(h.Key)).ToList();
            r[0] = NewFields(c, new R.Fields(headers, immutable: true));
        }),
        ("[method]incoming-request.consume", 1, 1, Consume),
        ("[method]incoming-body.stream", 1, 1, IncomingStream),
        ("[static]incoming-body.finish", 1, 1, (c, a, r) =>
        {
            c.Take<R.IncomingBody>(a);
            r[0] = c.New(new R.FutureTrailers(), R.Type.FutureTrailers);
        }),
        ("[method]future-trailers.subscribe", 1, 1, (c, a, r) =>
        {
            c.Get<R.FutureTrailers>(a);
            Ready(c, a, r);
        }),
        ("[method]future-trailers.get", 1, 1, (c, a, r) =>
        {
            // A request's trailers are not read: the body came whole and they are always "none".
            c.Get<R.FutureTrailers>(a);
            r[0] = Some(Ok(Ok(None())));
        }),
        ("[constructor]outgoing-response", 1, 1, (c, a, r) => r[0] = c.New(new R.OutgoingResponse(c.Take<R.Fields>(a)), R.Type.OutgoingResponse)),
        ("[method]outgoing-response.status-code", 1, 1, (c, a, r) => r[0] = U16(c.Get<R.OutgoingResponse>(a).Status)),
        ("[method]outgoing-response.set-status-code", 2, 1, SetStatus),
        ("[method]outgoing-response.headers", 1, 1, (c, a, r) => r[0] = c.New(new R.Fields(c.Get<R.OutgoingResponse>(a).Headers.Entries, immutable: true, charged: false), R.Type.Fields)),
        ("[method]outgoing-response.body", 1, 1, ResponseBody),
        ("[method]outgoing-body.write", 1, 1, BodyWrite),
        ("[static]outgoing-body.finish", 2, 1, (c, a, r) =>
        {
            // Trailers are not sent (the response goes out whole through Kestrel, ADR 0015): a trailers handle the guest
            // gives is taken (its slot freed, as a drop would) and its fields ignored.
            var body = c.Take<R.OutgoingBody>(a);
            var trailers = Option(a + 1);
            if (trailers != null)
            {
                c.Release(c.Take<R.Fields>(trailers));
            }

            body.Finished = true;
            r[0] = Ok();
        }),
        ("[static]response-outparam.set", 2, 0, SetResponse),
        ("http-error-code", 1, 1, (c, a, r) =>
        {
            // No error of ours carries an error-code; the borrow is read all the same (Wasmtime fails a call that leaves one).
            c.Get<R.Error>(a);
            r[0] = None();
        }),
    ];

    private static void FieldsFromList(HttpProxyCall call, Val* arguments, Val* results)
    {
        var entries = new List<KeyValuePair<string, byte[]>>();
        foreach (ref var entry in Items(arguments))
        {
            fixed (Val* pair = &entry)
            {
                var items = TupleItems(pair, 2);
                fixed (Val* name = &items[0])
                fixed (Val* value = &items[1])
                {
                    var key = String(name);
                    var bytes = Bytes(value);
                    if (!ValidName(key) || !ValidValue(bytes))
                    {
                        results[0] = Err(Variant("invalid-syntax"));
                        return;
                    }

                    if (Forbidden.Contains(key))
                    {
                        results[0] = Err(Variant("forbidden"));
                        return;
                    }

                    entries.Add(new(key, bytes));
                }
            }
        }

        var fields = new R.Fields(entries, immutable: false);
        CheckSize(fields.Size);
        results[0] = Ok(NewFields(call, fields));
    }

    private static void FieldsSet(HttpProxyCall call, Val* arguments, Val* results)
    {
        var fields = call.Get<R.Fields>(arguments);
        var name = String(arguments + 1);
        var values = new List<byte[]>();
        foreach (ref var item in Items(arguments + 2))
        {
            fixed (Val* value = &item)
            {
                values.Add(Bytes(value));
            }
        }

        if (Refused(fields, name, values) is { } refusal)
        {
            results[0] = refusal;
            return;
        }

        var removed = fields.Entries.Where(e => SameName(e.Key, name)).Sum(e => R.Fields.Cost(e.Key, e.Value));
        Resize(call, fields, fields.Size - removed + values.Sum(v => R.Fields.Cost(name, v)));
        fields.Entries.RemoveAll(e => SameName(e.Key, name));
        fields.Entries.AddRange(values.Select(v => new KeyValuePair<string, byte[]>(name, v)));
        results[0] = Ok();
    }

    private static void FieldsDelete(HttpProxyCall call, Val* arguments, Val* results)
    {
        var fields = call.Get<R.Fields>(arguments);
        var name = String(arguments + 1);
        if (Refused(fields, name, []) is { } refusal)
        {
            results[0] = refusal;
            return;
        }

        Resize(call, fields, fields.Size - fields.Entries.Where(e => SameName(e.Key, name)).Sum(e => R.Fields.Cost(e.Key, e.Value)));
        fields.Entries.RemoveAll(e => SameName(e.Key, name));
        results[0] = Ok();
    }

    private static void FieldsAppend(HttpProxyCall call, Val* arguments, Val* results)
    {
        var fields = call.Get<R.Fields>(arguments);
        var name = String(arguments + 1);
        var value = Bytes(arguments + 2);
        if (Refused(fields, name, [value]) is { } refusal)
        {
            results[0] = refusal;
            return;
        }

        Resize(call, fields, fields.Size + R.Fields.Cost(name, value));
        fields.Entries.Add(new(name, value));
        results[0] = Ok();
    }

    /// <summary>
    /// Names a guest may not set, read from a request, or delete: Wasmtime's DEFAULT_FORBIDDEN_HEADERS (crates/wasi-http
    /// lib.rs), hop-by-hop and connection-level fields the host owns. A change naming one is header-error forbidden.
    /// </summary>
    private static readonly HashSet<string> Forbidden = new(StringComparer.OrdinalIgnoreCase)
    {
        "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection", "transfer-encoding",
        "upgrade", "host", "http2-settings",
    };

    /// <summary>The header-error for a change of <paramref name="fields"/>, or null when it may be made; checked in
    /// Wasmtime's order (the name's syntax, forbidden, immutable, then the values' syntax).</summary>
    private static Val? Refused(R.Fields fields, string name, List<byte[]> values) =>
        !ValidName(name) ? Err(Variant("invalid-syntax"))
        : Forbidden.Contains(name) ? Err(Variant("forbidden"))
        : fields.Immutable ? Err(Variant("immutable"))
        : !values.TrueForAll(ValidValue) ? Err(Variant("invalid-syntax"))
        : null;

    /// <summary>A new fields handle, its size charged to the request's budget (<see cref="HttpProxyCall.FieldBytesLimit"/>).</summary>
    private static Val NewFields(HttpProxyCall call, R.Fields fields)
    {
        call.Charge(fields, fields.Size);
        return call.New(fields, R.Type.Fields);
    }

    /// <summary>Gives <paramref name="fields"/> its size after a change: past <see cref="R.Fields.SizeLimit"/> (a change
    /// that grows it) the guest traps, as Wasmtime's wasi-http traps on its field size limit, and the difference is
    /// charged to the request's budget. Called before the change is made, so a trap leaves the fields as they were.</summary>
    private static void Resize(HttpProxyCall call, R.Fields fields, long size)
    {
        if (size > fields.Size)
        {
            CheckSize(size);
        }

        call.Charge(fields, size - fields.Size);
        fields.Size = size;
    }

    private static void CheckSize(long size)
    {
        if (size > R.Fields.SizeLimit)
        {
            throw new InvalidOperationException(
                $"the fields exceed their limit of {R.Fields.SizeLimit} bytes (names and values, {R.Fields.FieldOverhead} more a field)");
        }
    }

    private static Val FieldValues(R.Fields fields, string name)
    {
        var values = fields.Entries.Where(e => SameName(e.Key, name)).Select(e => Bytes(e.Value)).ToArray();
        return List(values);
    }

    private static Val Entries(R.Fields fields) =>
        List(fields.Entries.Select(e => Tuple(String(e.Key), Bytes(e.Value))).ToArray());

    private static void Consume(HttpProxyCall call, Val* arguments, Val* results)
    {
        var request = call.Get<R.IncomingRequest>(arguments);
        if (request.Consumed)
        {
            results[0] = Err();
            return;
        }

        request.Consumed = true;
        results[0] = Ok(call.New(new R.IncomingBody(request.Request.Body), R.Type.IncomingBody));
    }

    private static void IncomingStream(HttpProxyCall call, Val* arguments, Val* results)
    {
        var body = call.Get<R.IncomingBody>(arguments);
        if (body.StreamTaken)
        {
            results[0] = Err();
            return;
        }

        body.StreamTaken = true;
        results[0] = Ok(call.New(new R.InputStream(body.Data), R.Type.InputStream));
    }

    private static void SetStatus(HttpProxyCall call, Val* arguments, Val* results)
    {
        var response = call.Get<R.OutgoingResponse>(arguments);
        var status = U16(arguments + 1);
        if (status is < 100 or > 999)
        {
            results[0] = Err();
            return;
        }

        response.Status = status;
        results[0] = Ok();
    }

    private static void ResponseBody(HttpProxyCall call, Val* arguments, Val* results)
    {
        var response = call.Get<R.OutgoingResponse>(arguments);
        if (response.Body is not null)
        {
            results[0] = Err();
            return;
        }

        response.Body = new R.OutgoingBody();
        results[0] = Ok(call.New(response.Body, R.Type.OutgoingBody));
    }

    private static void BodyWrite(HttpProxyCall call, Val* arguments, Val* results)
    {
        var body = call.Get<R.OutgoingBody>(arguments);
        if (body.StreamTaken)
        {
            results[0] = Err();
            return;
        }

        body.StreamTaken = true;
        results[0] = Ok(call.New(new R.OutputStream(body.Data, call.Options.BodyLimit, "response body", truncates: false, body), R.Type.OutputStream));
    }

    private static void SetResponse(HttpProxyCall call, Val* arguments, Val* results)
    {
        var outparam = call.Take<R.ResponseOutparam>(arguments);
        if (outparam.Set)
        {
            throw new InvalidOperationException("response-outparam.set called twice");
        }

        outparam.Set = true;
        if (Result(arguments + 1, out var payload))
        {
            call.Response = call.Take<R.OutgoingResponse>(payload);
        }
        else
        {
            call.ResponseError = payload is null ? "(none)" : Case(payload);
        }
    }

    private static Val Method(string method)
    {
        var lower = method.ToLowerInvariant();
        return Array.IndexOf(Methods, lower) >= 0 ? Variant(lower) : Variant("other", String(method));
    }

    private static Val Scheme(string scheme) => scheme switch
    {
        "http" => Variant("HTTP"),
        "https" => Variant("HTTPS"),
        _ => Variant("other", String(scheme)),
    };

    private static bool SameName(string a, string b) => string.Equals(a, b, StringComparison.OrdinalIgnoreCase);

    /// <summary>An RFC 9110 token.</summary>
    private static bool ValidName(string name) =>
        name.Length > 0 && name.All(ch => ch < 127 && (char.IsAsciiLetterOrDigit(ch) || "!#$%&'*+-.^_`|~".Contains(ch, StringComparison.Ordinal)));

    /// <summary>
    /// A field value this host can send: RFC 9110's field-value bytes (VCHAR, SP, HTAB) without its obs-text (0x80-0xFF),
    /// because Kestrel refuses a response header with a non-ASCII byte (the answer would be an empty 500 far from the
    /// guest's call). Controls (NUL, CR, LF, the others) and DEL are refused too: invalid-syntax, at the call that adds it.
    /// </summary>
    private static bool ValidValue(byte[] value) => value.All(b => b is (byte)'\t' or (>= 0x20 and < 0x7F));
}
