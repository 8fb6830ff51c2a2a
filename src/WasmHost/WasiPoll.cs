using System.Buffers.Binary;
using System.Diagnostics;
using Wasmtime;

namespace Propeller.WasmHost;

/// <summary>
/// WASI preview1 <c>poll_oneoff</c> for plugins and proplet tasks, in place of Wasmtime's: a guest's sleep (Rust's
/// <c>thread::sleep</c>, C's <c>sleep</c> and <c>nanosleep</c> all come here) waits at most until the
/// <see cref="IWaitLimit"/> of its store (the store's data) ends it, which the epoch check sees only while guest code runs:
/// in Wasmtime's own <c>poll_oneoff</c> a plugin with <c>timeout_ms: 100</c> that slept an hour held its request, and
/// its instance slot, for the hour, and a stopped task's guest kept its store, slot and epoch lease for as long as it
/// slept. Clock subscriptions wait for the earliest (relative, or absolute on the realtime clock; an absolute monotonic
/// time fires at once: its base is Wasmtime's); fd subscriptions are ready at once (stdin is empty, output captured). A
/// wait cut by the limit or the cancellation ends the call as the epoch check would have
/// (<see cref="IWaitLimit.ThrowIfEnded"/>).
/// </summary>
public static class WasiPoll
{
    private const int SubscriptionSize = 48;
    private const int EventSize = 32;
    private const int Success = 0;
    private const int Fault = 21; // EFAULT
    private const int Invalid = 28; // EINVAL

    /// <summary>Defines this <c>poll_oneoff</c> on <paramref name="linker"/> over the one its WASI defined.</summary>
    public static void Shadow(Linker linker)
    {
        ArgumentNullException.ThrowIfNull(linker);
        linker.AllowShadowing = true;
        linker.DefineFunction(
            "wasi_snapshot_preview1",
            "poll_oneoff",
            (CallerFunc<int, int, int, int, int>)((caller, subscriptions, events, count, written) => PollOneoff(caller, subscriptions, events, count, written)));
        linker.AllowShadowing = false;
    }

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

        var limit = caller.GetData() as IWaitLimit;
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
            var cut = Wait(sleep.Nanoseconds, limit);
            // Thrown here as the epoch check throws them: Wasmtime turns them into the call's trap. A wait cut at the limit
            // fails the call even when the wait ended a little early (the wait's clock rounds to milliseconds).
            limit?.ThrowIfEnded(cut);

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

    /// <summary>Waits <paramref name="nanoseconds"/>, but not past the limit's deadline nor beyond its cancellation; true
    /// when the deadline came first (the wait was cut).</summary>
    private static bool Wait(long nanoseconds, IWaitLimit? limit)
    {
        var end = HostWait.After(Stopwatch.GetTimestamp(), (ulong)nanoseconds);
        var deadline = limit?.Deadline ?? long.MaxValue;
        HostWait.Until(Math.Min(end, deadline), limit?.Cancellation ?? CancellationToken.None);
        return deadline < end;
    }

    private static bool InBounds(int pointer, long size, long length) => pointer >= 0 && (uint)pointer + size <= length;
}
