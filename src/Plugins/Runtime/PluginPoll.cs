using System.Buffers.Binary;
using System.Diagnostics;
using Wasmtime;

namespace Propeller.Plugins.Runtime;

/// <summary>
/// WASI preview1 <c>poll_oneoff</c> for plugins, in place of Wasmtime's: a guest's sleep (Rust's
/// <c>thread::sleep</c>, C's <c>sleep</c> and <c>nanosleep</c> all come here) waits at most until the call's wall-clock
/// limit or its caller's cancellation, which the epoch check sees only while guest code runs: in Wasmtime's own
/// <c>poll_oneoff</c> a plugin with <c>timeout_ms: 100</c> that slept an hour held its request, and its instance slot, for
/// the hour. Clock subscriptions wait for the earliest (relative, or absolute on the realtime clock; an absolute
/// monotonic time fires at once: its base is Wasmtime's); fd subscriptions are ready at once (a plugin's stdin is empty,
/// its output captured). A wait cut by the limit or the cancellation ends the call as the epoch check would have (a
/// time-limit failure, a cancelled call).
/// </summary>
internal static class PluginPoll
{
    private const int SubscriptionSize = 48;
    private const int EventSize = 32;
    private const int Success = 0;
    private const int Fault = 21; // EFAULT
    private const int Invalid = 28; // EINVAL

    public static int PollOneoff(Caller caller, int subscriptions, int events, int count, int written)
    {
        if (caller.GetMemory("memory") is not { } memory)
        {
            return Fault;
        }

        if (count <= 0)
        {
            return Invalid;
        }

        var length = memory.GetLength();
        if (!InBounds(subscriptions, (long)count * SubscriptionSize, length) || !InBounds(events, (long)count * EventSize, length) || !InBounds(written, 4, length))
        {
            return Fault;
        }

        var context = caller.GetData() as PluginInstance.InstanceContext;
        var ready = new List<(ulong UserData, byte Type)>();
        (ulong UserData, long Nanoseconds)? earliest = null;
        for (var i = 0; i < count; i++)
        {
            var subscription = memory.GetSpan(subscriptions + (i * SubscriptionSize), SubscriptionSize);
            var userData = BinaryPrimitives.ReadUInt64LittleEndian(subscription);
            var tag = subscription[8];
            if (tag != 0)
            {
                ready.Add((userData, tag)); // fd_read / fd_write: ready
                continue;
            }

            var clock = BinaryPrimitives.ReadUInt32LittleEndian(subscription[16..]);
            var timeout = BinaryPrimitives.ReadUInt64LittleEndian(subscription[24..]);
            var absolute = (BinaryPrimitives.ReadUInt16LittleEndian(subscription[40..]) & 1) != 0;
            var wait = !absolute ? timeout
                : clock == 0 ? (ulong)Math.Max(0, (long)timeout - (DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() * 1_000_000))
                : 0UL;
            var nanoseconds = (long)Math.Min(wait, long.MaxValue / 2);
            if (earliest is null || nanoseconds < earliest.Value.Nanoseconds)
            {
                earliest = (userData, nanoseconds);
            }
        }

        if (ready.Count == 0 && earliest is { } sleep)
        {
            var cut = Wait(sleep.Nanoseconds, context);
            // Thrown here as the epoch check throws them: Wasmtime turns them into the call's trap. A wait cut at the limit
            // fails the call even when the wait ended a little early (the wait's clock rounds to milliseconds).
            context?.Cancellation.ThrowIfCancellationRequested();
            if (cut)
            {
                throw new TimeoutException("the plugin call ran past its time limit");
            }

            ready.Add((sleep.UserData, 0));
        }

        for (var i = 0; i < ready.Count; i++)
        {
            var @event = memory.GetSpan(events + (i * EventSize), EventSize);
            @event.Clear();
            BinaryPrimitives.WriteUInt64LittleEndian(@event, ready[i].UserData);
            @event[10] = ready[i].Type;
        }

        BinaryPrimitives.WriteInt32LittleEndian(memory.GetSpan(written, 4), ready.Count);
        return Success;
    }

    /// <summary>Waits <paramref name="nanoseconds"/>, but not past the call's limit nor beyond its cancellation; true when
    /// the limit came first (the wait was cut).</summary>
    private static bool Wait(long nanoseconds, PluginInstance.InstanceContext? context)
    {
        var ticks = nanoseconds / 100;
        var cut = false;
        if (context is not null && context.Deadline != long.MaxValue)
        {
            var left = Math.Max(0, Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), context.Deadline).Ticks);
            cut = left < ticks;
            ticks = Math.Min(ticks, left);
        }

        if (ticks > 0)
        {
            var wait = TimeSpan.FromTicks(Math.Min(ticks, (long)int.MaxValue * TimeSpan.TicksPerMillisecond));
            (context?.Cancellation ?? CancellationToken.None).WaitHandle.WaitOne(wait);
        }

        return cut;
    }

    private static bool InBounds(int pointer, long size, long length) => pointer >= 0 && (uint)pointer + size <= length;
}
