using System.Buffers;

namespace Propeller.WasmHost.Components.Http;

/// <summary>
/// The host objects behind the resources of the wasi:http proxy world that this proplet implements (ADR 0015). A guest
/// holds handles whose rep indexes <see cref="HttpProxyCall"/>'s table; the resource type id travels with each handle
/// (Wasmtime checks it at every boundary), so a handle of one type can never reach a function of another.
/// </summary>
internal static class WasiResources
{
    public enum Type : uint
    {
        Fields = 1,
        IncomingRequest,
        ResponseOutparam,
        IncomingBody,
        FutureTrailers,
        OutgoingResponse,
        OutgoingBody,
        InputStream,
        OutputStream,
        Pollable,
        Error,
    }

    /// <summary>
    /// <c>fields</c> (headers and trailers): names are kept as given, compared case-insensitively. <see cref="Size"/> is
    /// what its entries cost as Wasmtime's wasi-http counts them (each field's name and value bytes plus a fixed
    /// <see cref="FieldOverhead"/>, so an empty value costs too); a change that would take a mutable one past
    /// <see cref="SizeLimit"/> traps, as Wasmtime's does. <see cref="Charged"/>: whether its size counts against the
    /// request's budget (<see cref="HttpProxyCall.FieldBytesLimit"/>); a view of another's entries
    /// (<c>outgoing-response.headers</c>) copies nothing and is not charged.
    /// </summary>
    public sealed class Fields(List<KeyValuePair<string, byte[]>> entries, bool immutable, bool charged = true)
    {
        /// <summary>128 KiB: Wasmtime's DEFAULT_FIELD_SIZE_LIMIT (crates/wasi-http ctx.rs).</summary>
        public const int SizeLimit = 128 << 10;

        /// <summary>What a field costs beyond its bytes (Wasmtime adds the size of its HeaderName and HeaderValue); about
        /// what the host spends on an entry's objects.</summary>
        public const int FieldOverhead = 64;

        public List<KeyValuePair<string, byte[]>> Entries { get; } = entries;

        public bool Immutable { get; } = immutable;

        public bool Charged { get; } = charged;

        public long Size { get; set; } = entries.Sum(e => Cost(e.Key, e.Value));

        public static long Cost(string name, byte[] value) => name.Length + value.Length + FieldOverhead;
    }

    public sealed class IncomingRequest(HttpProxyRequest request)
    {
        public HttpProxyRequest Request { get; } = request;

        public bool Consumed { get; set; }
    }

    public sealed class ResponseOutparam
    {
        public bool Set { get; set; }
    }

    public sealed class IncomingBody(byte[] data)
    {
        public byte[] Data { get; } = data;

        public bool StreamTaken { get; set; }
    }

    public sealed class FutureTrailers;

    public sealed class OutgoingResponse(Fields headers)
    {
        public Fields Headers { get; } = headers;

        public ushort Status { get; set; } = 200;

        public OutgoingBody? Body { get; set; }
    }

    /// <summary>The response body: what the guest writes to its stream, up to the options' limit. It is complete only
    /// once <c>outgoing-body.finish</c> was called (<see cref="Finished"/>); wasi:http treats one dropped without it as
    /// corrupted, so the host answers an error then.</summary>
    public sealed class OutgoingBody
    {
        public ArrayBufferWriter<byte> Data { get; } = new();

        public bool StreamTaken { get; set; }

        public bool Finished { get; set; }

        /// <summary>Why a write to its stream failed (the body limit), which makes the body wrong whatever follows: the
        /// request fails rather than sending what the other writes left.</summary>
        public string? Failure { get; set; }
    }

    /// <summary>An input stream over bytes in memory (a request body, or an empty stdin).</summary>
    public sealed class InputStream(byte[] data)
    {
        public byte[] Data { get; } = data;

        public int Position { get; set; }
    }

    /// <summary>An output stream into a response body (<see cref="Body"/>), or into the request's bounded stdout/stderr
    /// capture.</summary>
    public sealed class OutputStream(ArrayBufferWriter<byte> sink, int limit, string what, bool truncates, OutgoingBody? body = null)
    {
        public ArrayBufferWriter<byte> Sink { get; } = sink;

        public int Limit { get; } = limit;

        public string What { get; } = what;

        /// <summary>Whether bytes past <see cref="Limit"/> are dropped silently (stdout, stderr) rather than refused (a
        /// response body, whose truncation would be a wrong answer).</summary>
        public bool Truncates { get; } = truncates;

        public OutgoingBody? Body { get; } = body;

        /// <summary>Whether an operation failed (last-operation-failed): wasi:io closes the stream then, so every later one
        /// gets closed.</summary>
        public bool Failed { get; set; }

        /// <summary>Closed: after a failure, or once its body was finished (the body is complete; Wasmtime's finish closes
        /// the body's stream too).</summary>
        public bool Closed => Failed || Body is { Finished: true };
    }

    /// <summary>A pollable: ready at once, or at a monotonic-clock deadline (nanoseconds of <see cref="HttpProxyCall.Now"/>).</summary>
    public sealed class Pollable(ulong deadline)
    {
        public ulong Deadline { get; } = deadline;
    }

    public sealed class Error(string message)
    {
        public string Message { get; } = message;
    }
}
