using System.Security.Cryptography;
using static Propeller.WasmHost.Components.Http.ComponentValues;

namespace Propeller.WasmHost.Components.Http;

/// <summary>wasi:cli environment and exit, wasi:clocks and wasi:random for a proxy component's runtime.</summary>
internal static unsafe partial class WasiProxyWorld
{
    private static (string, int, int, HostFunction)[] Environment() =>
    [
        ("get-environment", 0, 1, (c, a, r) => r[0] = List(c.Options.Environment.Select(e => Tuple(String(e.Key), String(e.Value))).ToArray())),
        ("get-arguments", 0, 1, (c, a, r) => r[0] = List(c.Options.Arguments.Select(String).ToArray())),
        ("initial-cwd", 0, 1, (c, a, r) => r[0] = None()),
    ];

    private static (string, int, int, HostFunction)[] Exit() =>
    [
        ("exit", 1, 0, (c, a, r) => throw new InvalidOperationException(
            $"the component called wasi:cli/exit with {(Result(a, out _) ? "ok" : "err")} while handling the request")),
    ];

    private static (string, int, int, HostFunction)[] MonotonicClock() =>
    [
        ("now", 0, 1, (c, a, r) => r[0] = U64(HttpProxyCall.Now())),
        ("resolution", 0, 1, (c, a, r) => r[0] = U64(1)),
        ("subscribe-instant", 1, 1, (c, a, r) => r[0] = c.New(new WasiResources.Pollable(U64(a)), WasiResources.Type.Pollable)),
        ("subscribe-duration", 1, 1, (c, a, r) => r[0] = c.New(new WasiResources.Pollable(After(U64(a))), WasiResources.Type.Pollable)),
    ];

    private static (string, int, int, HostFunction)[] WallClock() =>
    [
        ("now", 0, 1, (c, a, r) =>
        {
            var now = DateTimeOffset.UtcNow - DateTimeOffset.UnixEpoch;
            r[0] = Record(("seconds", U64((ulong)now.Ticks / TimeSpan.TicksPerSecond)), ("nanoseconds", U32((uint)(now.Ticks % TimeSpan.TicksPerSecond * 100))));
        }),
        ("resolution", 0, 1, (c, a, r) => r[0] = Record(("seconds", U64(0)), ("nanoseconds", U32(100)))),
    ];

    private static (string, int, int, HostFunction)[] Random(string bytes, string u64, bool secure) =>
    [
        (bytes, 1, 1, (c, a, r) =>
        {
            var length = U64(a);
            if (length > ChunkLimit)
            {
                throw new InvalidOperationException($"{bytes} asked for {length} bytes; this host gives at most {ChunkLimit} per call");
            }

            var buffer = new byte[length];
            if (secure)
            {
                RandomNumberGenerator.Fill(buffer);
            }
            else
            {
                System.Random.Shared.NextBytes(buffer);
            }

            r[0] = Bytes(buffer);
        }),
        (u64, 0, 1, (c, a, r) => r[0] = U64(NextU64(secure))),
    ];

    /// <summary>The monotonic time <paramref name="duration"/> nanoseconds from now, saturated: a duration past the end of
    /// the clock is "never", not a deadline wrapped into the past (ready at once).</summary>
    private static ulong After(ulong duration)
    {
        var now = HttpProxyCall.Now();
        return duration > ulong.MaxValue - now ? ulong.MaxValue : now + duration;
    }

    private static ulong NextU64(bool secure)
    {
        Span<byte> bytes = stackalloc byte[8];
        if (secure)
        {
            RandomNumberGenerator.Fill(bytes);
        }
        else
        {
            System.Random.Shared.NextBytes(bytes);
        }

        return BitConverter.ToUInt64(bytes);
    }
}
