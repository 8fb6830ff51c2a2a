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
/// time fires at once: its base is Wasmtime's); fd subscriptions are ready at once (stdin is empty, output captured); a
/// subscription of another kind makes the call EINVAL, as Wasmtime's does. Guest addresses are unsigned 32-bit (a
/// buffer may lie at or above 2 GiB). A wait cut by the limit or the cancellation ends the call as the epoch check
/// would have (<see cref="IWaitLimit.ThrowIfEnded"/>).
/// </summary>
public static class WasiPoll
{
    private const int SubscriptionSize = 48;
    private const int EventSize = 32;
    private const int Success = 0;
    private const int Fault = 21; // EFAULT
    private const int Invalid = 28; // EINVAL
    private const byte Clock = 0; // eventtype: clock, fd_read, fd_write
    private const byte FdWrite = 2;

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

        // Wasm passes addresses as i32; they are unsigned, so an address at or above 2 GiB arrives negative.
        var (subscriptionsAt, eventsAt, writtenAt) = (Address(subscriptions), Address(events), Address(written));
        var length = memory.GetLength();
        if (!InBounds(subscriptionsAt, (long)count * SubscriptionSize, length) || !InBounds(eventsAt, (long)count * EventSize, length) || !InBounds(writtenAt, 4, length))
        {
            return Fault;
        }

        var limit = caller.GetData() as IWaitLimit;
        var ready = new List<(ulong UserData, byte Type)>();
        (ulong UserData, long Nanoseconds)? earliest = null;
        for (var i = 0; i < count; i++)
        {
            var subscription = memory.GetSpan(subscriptionsAt + ((long)i * SubscriptionSize), SubscriptionSize);
            var userData = BinaryPrimitives.ReadUInt64LittleEndian(subscription);
            var tag = subscription[8];
            if (tag > FdWrite)
            {
                return Invalid; // not a subscription kind: Wasmtime's poll_oneoff refuses the call (its read of the union fails)
            }

            if (tag != Clock)
            {
                ready.Add((userData, tag)); // fd_read / fd_write: ready
                continue;
            }

            var clock = BinaryPrimitives.ReadUInt32LittleEndian(subscription[16..]);
            var timeout = BinaryPrimitives.ReadUInt64LittleEndian(subscription[24..]);
            var absolute = (BinaryPrimitives.ReadUInt16LittleEndian(subscription[40..]) & 1) != 0;
            var wait = !absolute ? timeout
                : clock == 0 ? Until(timeout)
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
            var @event = memory.GetSpan(eventsAt + ((long)i * EventSize), EventSize);
            @event.Clear();
            BinaryPrimitives.WriteUInt64LittleEndian(@event, ready[i].UserData);
            @event[10] = ready[i].Type;
        }

        BinaryPrimitives.WriteInt32LittleEndian(memory.GetSpan(writtenAt, 4), ready.Count);
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

    /// <summary>
    /// Nanoseconds from now until <paramref name="realtime"/> (nanoseconds since the Unix epoch), 0 when it has passed.
    /// Unsigned throughout: a time beyond <see cref="long.MaxValue"/> (u64::MAX, "never") is far in the future, where a
    /// cast to long made it negative, in the past, and the wait fired at once.
    /// </summary>
    private static ulong Until(ulong realtime)
    {
        var now = (ulong)(DateTime.UtcNow - DateTime.UnixEpoch).Ticks * 100;
        return realtime > now ? realtime - now : 0;
    }

    /// <summary>A guest address (wasm32: an unsigned 32-bit offset passed as i32).</summary>
    private static long Address(int pointer) => (uint)pointer;

    private static bool InBounds(long address, long size, long length) => address + size <= length;
}
