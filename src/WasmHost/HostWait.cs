using System.Diagnostics;

namespace Propeller.WasmHost;

/// <summary>
/// The wait of a guest's sleeping host call (preview 1 <c>poll_oneoff</c>, wasi:io's <c>block</c> and <c>poll</c>): until
/// a <see cref="Stopwatch"/> timestamp has really passed, or until cancelled. WaitOne counts whole milliseconds (a
/// TimeSpan is truncated: a sub-millisecond wait is no wait at all) and may wake a little early, so it waits the time
/// left rounded up, again until the deadline is behind.
/// </summary>
internal static class HostWait
{
    private const long MaxSliceMilliseconds = 24 * 60 * 60 * 1000;

    public static void Until(long deadline, CancellationToken cancellation)
    {
        // Cancellation checked before each wait: a task's token source may be disposed once it is cancelled (its
        // WaitHandle then throws).
        for (var now = Stopwatch.GetTimestamp(); now < deadline && !cancellation.IsCancellationRequested; now = Stopwatch.GetTimestamp())
        {
            // A wait longer than a slice is a slice, decided before the multiplication: the guest chooses the length,
            // and `left * 1000 + Frequency - 1` overflowed for lengths just under long.MaxValue / 1000 ticks (about
            // 106.75 days on Linux), making WaitOne's argument negative (ArgumentOutOfRangeException out of the call).
            var left = deadline - now;
            var milliseconds = left >= MaxSliceMilliseconds * (Stopwatch.Frequency / 1000) ? MaxSliceMilliseconds
                : Math.Min(((left * 1000) + Stopwatch.Frequency - 1) / Stopwatch.Frequency, MaxSliceMilliseconds);
            cancellation.WaitHandle.WaitOne((int)milliseconds);
        }
    }

    /// <summary>The timestamp <paramref name="nanoseconds"/> from <paramref name="now"/>, saturating at <see cref="long.MaxValue"/>.</summary>
    public static long After(long now, ulong nanoseconds)
    {
        var ticks = nanoseconds / 1_000_000_000.0 * Stopwatch.Frequency;
        return ticks >= long.MaxValue - now ? long.MaxValue : now + (long)Math.Ceiling(ticks);
    }
}
