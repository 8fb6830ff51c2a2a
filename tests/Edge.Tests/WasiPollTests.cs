using System.Buffers.Binary;
using System.Diagnostics;
using Propeller.Tests.Shared;
using Propeller.WasmHost;
using Wasmtime;

namespace Propeller.Edge.Tests;

/// <summary>
/// The proplet's own WASI <c>poll_oneoff</c> (<see cref="WasiPoll"/>) called directly by a guest whose memory the test
/// fills: subscriptions of 48 bytes (userdata at 0, tag at 8, clock id at 16, timeout at 24, flags at 40), events of 32
/// (userdata at 0, errno at 8, type at 10).
/// </summary>
public sealed class WasiPollTests
{
    private const int Success = 0;
    private const int Invalid = 28;

    /// <summary>
    /// wasm32 addresses are unsigned: buffers at 2 GiB and above are the guest's memory like any other (they arrived as
    /// negative ints and were refused with EFAULT). The memory is only reserved: one page of it is touched.
    /// </summary>
    [Fact]
    public void GivenBuffersAtOrAbove2GiB_WhenPolled_ThenTheyAreReadAndWritten()
    {
        const long At = 1L << 31;
        using var guest = new Guest(pages: (int)(At >> 16) + 1, limit: null);
        guest.Subscription(At, index: 0, userData: 7, tag: 0, clock: 1, timeout: 0, absolute: false);

        guest.Poll(At, At + 1024, count: 1, At + 2048).ShouldBe(Success);

        guest.Memory.ReadInt32(At + 2048).ShouldBe(1);
        guest.Memory.ReadInt64(At + 1024).ShouldBe(7);
    }

    /// <summary>
    /// An absolute realtime timeout beyond i64::MAX (u64::MAX: never) is far in the future: the guest sleeps until its
    /// limit ends the call (it was cast to a negative long, taken as a time long past, and fired at once).
    /// </summary>
    [Fact]
    public void GivenAnAbsoluteRealtimeTimeoutOfU64Max_WhenPolled_ThenItWaitsUntilTheLimitEndsTheCall()
    {
        var limit = new Limit();
        using var guest = new Guest(pages: 1, limit);
        guest.Subscription(0, index: 0, userData: 7, tag: 0, clock: 0, timeout: ulong.MaxValue, absolute: true);
        limit.Deadline = Stopwatch.GetTimestamp() + (Stopwatch.Frequency / 5); // 200 ms from now

        var trap = Should.Throw<WasmtimeException>(() => guest.Poll(0, 1024, count: 1, 2048));

        trap.InnerException.ShouldBeOfType<TimeoutException>();
        Stopwatch.GetTimestamp().ShouldBeGreaterThanOrEqualTo(limit.Deadline);
        guest.Memory.ReadInt32(2048).ShouldBe(0); // no event
    }

    /// <summary>
    /// A relative timeout just under long.MaxValue / 1000 ticks (about 106.75 days; the guest chooses it): a sleep that
    /// the limit ends. The wait's millisecond arithmetic overflowed, and WaitOne's negative argument failed the call with
    /// .NET's "millisecondsTimeout" error instead.
    /// </summary>
    [Fact]
    public void GivenARelativeTimeoutNearTheMillisecondArithmeticsEdge_WhenPolled_ThenItWaitsUntilTheLimitEndsTheCall()
    {
        using var stop = new CancellationTokenSource();
        var limit = new Limit { Cancellation = stop.Token }; // no deadline: the guest's own length is the wait's
        using var guest = new Guest(pages: 1, limit);
        var ticks = (long.MaxValue / 1000) - (Stopwatch.Frequency / 2); // left * 1000 + Frequency - 1 > long.MaxValue
        var nanoseconds = (ulong)(ticks / (double)Stopwatch.Frequency * 1e9);
        guest.Subscription(0, index: 0, userData: 7, tag: 0, clock: 1, timeout: nanoseconds, absolute: false);
        stop.CancelAfter(TimeSpan.FromMilliseconds(200));

        var trap = Should.Throw<WasmtimeException>(() => guest.Poll(0, 1024, count: 1, 2048));

        trap.InnerException.ShouldBeOfType<OperationCanceledException>();
        guest.Memory.ReadInt32(2048).ShouldBe(0); // no event
    }

    /// <summary>An absolute realtime timeout already past fires at once.</summary>
    [Fact]
    public void GivenAnAbsoluteRealtimeTimeoutInThePast_WhenPolled_ThenItFiresAtOnce()
    {
        using var guest = new Guest(pages: 1, limit: new Limit());
        guest.Subscription(0, index: 0, userData: 7, tag: 0, clock: 0, timeout: 1_000_000_000, absolute: true);

        guest.Poll(0, 1024, count: 1, 2048).ShouldBe(Success);

        guest.Memory.ReadInt32(2048).ShouldBe(1);
    }

    /// <summary>
    /// A tag that is no subscription kind (clock 0, fd_read 1, fd_write 2) makes the call EINVAL with no event, as
    /// Wasmtime's <c>poll_oneoff</c> does; it was reported as a ready event of that bogus type.
    /// </summary>
    [Fact]
    public void GivenASubscriptionOfAnUnknownKind_WhenPolled_ThenTheCallIsEinval()
    {
        using var guest = new Guest(pages: 1, limit: null);
        guest.Subscription(0, index: 0, userData: 7, tag: 1, clock: 0, timeout: 0, absolute: false); // fd_read: fine
        guest.Subscription(0, index: 1, userData: 8, tag: 3, clock: 0, timeout: 0, absolute: false);

        guest.Poll(0, 1024, count: 2, 2048).ShouldBe(Invalid);

        guest.Memory.ReadInt32(2048).ShouldBe(0);
    }

    /// <summary>A module calling <c>poll_oneoff</c> with the test's arguments, on a linker with only <see cref="WasiPoll"/>.</summary>
    private sealed class Guest : IDisposable
    {
        private readonly Engine _engine = new();
        private readonly Store _store;
        private readonly Func<int, int, int, int, int> _poll;

        public Guest(int pages, IWaitLimit? limit)
        {
            using var module = Module.FromBytes(_engine, "poll", Wat.ToWasm($$"""
                (module
                  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
                  (memory (export "memory") {{pages}})
                  (func (export "poll") (param i32 i32 i32 i32) (result i32)
                    (call $poll (local.get 0) (local.get 1) (local.get 2) (local.get 3))))
                """));
            using var linker = new Linker(_engine);
            WasiPoll.Shadow(linker);
            _store = limit is null ? new Store(_engine) : new Store(_engine, limit);
            var instance = linker.Instantiate(_store, module);
            Memory = instance.GetMemory("memory")!;
            _poll = instance.GetFunction<int, int, int, int, int>("poll")!;
        }

        public Memory Memory { get; }

        public int Poll(long subscriptions, long events, int count, long written) =>
            _poll(unchecked((int)subscriptions), unchecked((int)events), count, unchecked((int)written));

        public void Subscription(long at, int index, ulong userData, byte tag, uint clock, ulong timeout, bool absolute)
        {
            var subscription = Memory.GetSpan(at + (index * 48L), 48);
            subscription.Clear();
            BinaryPrimitives.WriteUInt64LittleEndian(subscription, userData);
            subscription[8] = tag;
            BinaryPrimitives.WriteUInt32LittleEndian(subscription[16..], clock);
            BinaryPrimitives.WriteUInt64LittleEndian(subscription[24..], timeout);
            BinaryPrimitives.WriteUInt16LittleEndian(subscription[40..], absolute ? (ushort)1 : (ushort)0);
        }

        public void Dispose()
        {
            _store.Dispose();
            _engine.Dispose();
        }
    }

    /// <summary>A limit the test sets once the guest is ready (compiling it may take a while); a wait it cut ends the
    /// call with a <see cref="TimeoutException"/>, one its cancellation ended with an <see cref="OperationCanceledException"/>.</summary>
    private sealed class Limit : IWaitLimit
    {
        public long Deadline { get; set; } = long.MaxValue;

        public CancellationToken Cancellation { get; init; }

        public void ThrowIfEnded(bool cut)
        {
            if (cut)
            {
                throw new TimeoutException("the test's limit");
            }

            Cancellation.ThrowIfCancellationRequested();
        }
    }
}
