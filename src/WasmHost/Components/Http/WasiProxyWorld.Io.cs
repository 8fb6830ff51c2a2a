using System.Buffers;
using static Propeller.WasmHost.Components.Http.ComponentNative;
using static Propeller.WasmHost.Components.Http.ComponentValues;
using R = Propeller.WasmHost.Components.Http.WasiResources;

namespace Propeller.WasmHost.Components.Http;

/// <summary>wasi:io error, poll and streams over in-memory bodies: every stream is ready at once, so every pollable but a
/// clock's is too, and a blocking call never blocks except on a clock deadline.</summary>
internal static unsafe partial class WasiProxyWorld
{
    /// <summary>The most one read or write moves (wasi:io lets a host give less than asked).</summary>
    private const int ChunkLimit = 1 << 20;

    private static (string, int, int, HostFunction)[] IoError() =>
    [
        ("[method]error.to-debug-string", 1, 1, (c, a, r) => r[0] = String(c.Get<R.Error>(a).Message)),
    ];

    private static (string, int, int, HostFunction)[] Poll() =>
    [
        ("[method]pollable.ready", 1, 1, (c, a, r) => r[0] = Bool(c.Get<R.Pollable>(a).Deadline <= HttpProxyCall.Now())),
        ("[method]pollable.block", 1, 0, (c, a, r) => Block(c, c.Get<R.Pollable>(a).Deadline)),
        ("poll", 1, 1, PollList),
    ];

    private static (string, int, int, HostFunction)[] Streams() =>
    [
        ("[method]input-stream.read", 2, 1, Read),
        ("[method]input-stream.blocking-read", 2, 1, Read),
        ("[method]input-stream.skip", 2, 1, Skip),
        ("[method]input-stream.blocking-skip", 2, 1, Skip),
        ("[method]input-stream.subscribe", 1, 1, (c, a, r) =>
        {
            c.Get<R.InputStream>(a);
            Ready(c, a, r);
        }),
        ("[method]output-stream.check-write", 1, 1, CheckWrite),
        ("[method]output-stream.write", 2, 1, Write),
        ("[method]output-stream.blocking-write-and-flush", 2, 1, Write),
        ("[method]output-stream.flush", 1, 1, Flush),
        ("[method]output-stream.blocking-flush", 1, 1, Flush),
        ("[method]output-stream.subscribe", 1, 1, (c, a, r) =>
        {
            c.Get<R.OutputStream>(a);
            Ready(c, a, r);
        }),
        ("[method]output-stream.write-zeroes", 2, 1, WriteZeroes),
        ("[method]output-stream.blocking-write-zeroes-and-flush", 2, 1, WriteZeroes),
        ("[method]output-stream.splice", 3, 1, Splice),
        ("[method]output-stream.blocking-splice", 3, 1, Splice),
    ];

    /// <summary>A pollable that is ready at once. Its caller reads its <c>borrow</c> argument first: Wasmtime fails a host
    /// call that returns with a borrow it never read ("borrow handles still remain at the end of the call").</summary>
    private static void Ready(HttpProxyCall call, Val* arguments, Val* results) =>
        results[0] = call.New(new R.Pollable(0), R.Type.Pollable);

    /// <summary>Waits until <paramref name="deadline"/> (monotonic nanoseconds, <see cref="HttpProxyCall.Now"/>) has really
    /// passed (<see cref="HostWait"/>: <c>block</c> returns with its pollable ready and <c>poll</c> never answers an empty
    /// list), or until the request is ended: then the call fails with the options' reason (it failed as "The operation was
    /// canceled.", where a handler that computes past the time limit is told which limit ended it).</summary>
    private static void Block(HttpProxyCall call, ulong deadline)
    {
        var ended = call.Options.Ended;
        var now = HttpProxyCall.Now();
        if (deadline > now)
        {
            HostWait.Until(HostWait.After(System.Diagnostics.Stopwatch.GetTimestamp(), deadline - now), ended);
        }

        if (ended.IsCancellationRequested)
        {
            throw new OperationCanceledException(call.Options.EndedReason?.Invoke() ?? "the request was ended while it waited", null, ended);
        }
    }

    private static void PollList(HttpProxyCall call, Val* arguments, Val* results)
    {
        var items = Items(arguments);
        if (items.Length == 0)
        {
            throw new InvalidOperationException("wasi:io/poll.poll called with an empty list");
        }

        var deadlines = new ulong[items.Length];
        for (var i = 0; i < items.Length; i++)
        {
            fixed (Val* item = &items[i])
            {
                deadlines[i] = call.Get<R.Pollable>(item).Deadline;
            }
        }

        var now = HttpProxyCall.Now();
        if (deadlines.All(d => d > now))
        {
            Block(call, deadlines.Min());
            now = HttpProxyCall.Now();
        }

        var ready = new List<Val>();
        for (var i = 0; i < deadlines.Length; i++)
        {
            if (deadlines[i] <= now)
            {
                ready.Add(U32((uint)i));
            }
        }

        results[0] = List(ready.ToArray());
    }

    private static void Read(HttpProxyCall call, Val* arguments, Val* results)
    {
        var stream = call.Get<R.InputStream>(arguments);
        var length = (int)Math.Min(U64(arguments + 1), ChunkLimit);
        var left = stream.Data.Length - stream.Position;
        if (left == 0)
        {
            results[0] = Err(Variant("closed"));
            return;
        }

        var chunk = Math.Min(left, length);
        results[0] = Ok(Bytes(stream.Data.AsSpan(stream.Position, chunk)));
        stream.Position += chunk;
    }

    private static void Skip(HttpProxyCall call, Val* arguments, Val* results)
    {
        var stream = call.Get<R.InputStream>(arguments);
        var left = stream.Data.Length - stream.Position;
        if (left == 0)
        {
            results[0] = Err(Variant("closed"));
            return;
        }

        var chunk = (int)Math.Min((ulong)left, U64(arguments + 1));
        stream.Position += chunk;
        results[0] = Ok(U64((ulong)chunk));
    }

    /// <summary>
    /// The room a write may use: what one write moves (1 MiB), whatever is left of a response body's limit, as Wasmtime's
    /// body stream reports its buffer's room rather than what is left of a content-length; the write that would cross
    /// the limit is the one that fails. A body filled exactly to its limit is not an error: check-write after its last
    /// write and flush (wasi:io's blocking-flush is flush, block, check-write) succeeds. Never 0: that tells the guest
    /// to wait on <c>subscribe</c>, whose pollable is ready at once here, so a guest with more to write would spin until
    /// its limits end it instead of failing on its write. stdout and stderr always have room (what passes their cap is
    /// dropped, never an error a guest's runtime would panic on). A closed stream (a failed write, a finished body) is
    /// closed.
    /// </summary>
    private static void CheckWrite(HttpProxyCall call, Val* arguments, Val* results)
    {
        var stream = call.Get<R.OutputStream>(arguments);
        results[0] = stream.Closed ? Closed() : Ok(U64(ChunkLimit));
    }

    private static void Write(HttpProxyCall call, Val* arguments, Val* results)
    {
        var stream = call.Get<R.OutputStream>(arguments);
        var bytes = Bytes(arguments + 1);
        results[0] = stream.Closed ? Closed() : Append(call, stream, bytes);
    }

    private static void WriteZeroes(HttpProxyCall call, Val* arguments, Val* results)
    {
        var stream = call.Get<R.OutputStream>(arguments);
        var length = U64(arguments + 1);
        var room = (ulong)Math.Max(0, stream.Limit - stream.Sink.WrittenCount);
        results[0] = stream.Closed ? Closed()
            : stream.Truncates ? Append(call, stream, new byte[Math.Min(length, room)])
            : length > room ? Full(call, stream)
            : Append(call, stream, new byte[length]);
    }

    private static void Flush(HttpProxyCall call, Val* arguments, Val* results)
    {
        var stream = call.Get<R.OutputStream>(arguments);
        results[0] = stream.Closed ? Closed() : Ok();
    }

    private static void Splice(HttpProxyCall call, Val* arguments, Val* results)
    {
        var target = call.Get<R.OutputStream>(arguments);
        var source = call.Get<R.InputStream>(arguments + 1);
        if (target.Closed)
        {
            results[0] = Closed();
            return;
        }

        var left = source.Data.Length - source.Position;
        if (left == 0)
        {
            results[0] = Err(Variant("closed"));
            return;
        }

        var chunk = (int)Math.Min((ulong)Math.Min(left, ChunkLimit), U64(arguments + 2));
        var written = Append(call, target, source.Data.AsSpan(source.Position, chunk));
        if ((byte)written.A != 0)
        {
            source.Position += chunk;
            written = Ok(U64((ulong)chunk));
        }

        results[0] = written;
    }

    private static Val Append(HttpProxyCall call, R.OutputStream stream, ReadOnlySpan<byte> bytes)
    {
        if (stream.Sink.WrittenCount + bytes.Length > stream.Limit)
        {
            if (stream.Truncates)
            {
                // stdout and stderr keep their first bytes; the rest is dropped, as the task output limit does.
                bytes = bytes[..Math.Max(0, stream.Limit - stream.Sink.WrittenCount)];
                stream.Sink.Write(bytes);
                return Ok();
            }

            return Full(call, stream);
        }

        stream.Sink.Write(bytes);
        return Ok();
    }

    /// <summary>
    /// A write past a response body's limit: last-operation-failed, after which (wasi:io) the stream is closed, so a later
    /// smaller write cannot append to a body that lost bytes; the body records the failure and the request fails
    /// (<see cref="HttpProxyComponent"/>) even if the guest ignores the error and finishes the body.
    /// </summary>
    private static Val Full(HttpProxyCall call, R.OutputStream stream)
    {
        var message = $"the {stream.What} exceeds its limit of {stream.Limit} bytes";
        stream.Failed = true;
        if (stream.Body is { } body)
        {
            body.Failure ??= message;
        }

        return Err(Variant("last-operation-failed", call.New(new R.Error(message), R.Type.Error)));
    }

    private static Val Closed() => Err(Variant("closed"));
}
