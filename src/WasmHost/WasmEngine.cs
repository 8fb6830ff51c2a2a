using System.Globalization;
using Wasmtime;

namespace Propeller.WasmHost;

/// <summary>
/// The process's Wasmtime <see cref="Wasmtime.Engine"/> (ADR 0007): fuel metering and epoch interruption compiled in, and
/// one ticker that advances the epoch every <see cref="EpochTick"/>. A store armed with <see cref="Watch"/> calls its
/// check at every tick while guest code runs, so a stop or a timeout ends the guest within about one tick. The ticker
/// ticks only while someone holds a <see cref="EpochLease"/> (from <see cref="Watch"/> or <see cref="KeepTicking"/>):
/// an engine with no guest running does not wake at all.
/// </summary>
public sealed class WasmEngine : IDisposable
{
    /// <summary>
    /// The epoch period. The guest checks the epoch at every function entry and loop back edge whatever the period, so
    /// the period costs nothing in guest code; it only bounds how late a stop or timeout is seen (one tick) and how often
    /// a running store's check runs (100 times a second). Timeouts are whole milliseconds to seconds, so 10 ms.
    /// </summary>
    public static readonly TimeSpan EpochTick = TimeSpan.FromMilliseconds(10);

    /// <summary>
    /// Wasmtime's default wasm stack (512 KiB), stated so it is a decision: deep recursion ends in the "call stack
    /// exhausted" trap before the host thread's stack (1.5 MiB for pool threads, 8 MiB for guest threads) runs out.
    /// </summary>
    public const int MaxWasmStack = 512 << 10;

    /// <summary>Ticks the ticker goes on for after the last lease is released (100 ms) before it blocks.</summary>
    public const int LingerTicks = 10;

    private static readonly Lock s_gate = new();
    private static readonly Lazy<WasmEngine> s_shared = new(CreateShared);
    private static WasmPool? s_sharedPool = new();

    /// <summary>
    /// Set under <see cref="s_gate"/> when the shared engine's creation has read <see cref="s_sharedPool"/>: from then on
    /// a configuration comes too late, although <c>IsValueCreated</c> stays false until the engine is built.
    /// </summary>
    private static bool s_sharedStarted;

    private readonly Thread? _ticker;
    private readonly ManualResetEvent _stopTicking = new(false);

    /// <summary>Set while at least one lease is held; changed only under <see cref="_leaseGate"/> with the count.</summary>
    private readonly ManualResetEvent _leased = new(false);
    private readonly Lock _leaseGate = new();
    private int _leases;
    private long _ticks;
    private int _disposed;

    /// <summary>An engine with Wasmtime's on-demand allocator, or the pooling one when <paramref name="pool"/> is given
    /// (its reservation is made here; a <see cref="WasmtimeException"/> when the address space cannot hold it).</summary>
    public WasmEngine(bool fuel, bool epochs, WasmPool? pool = null)
    {
        var config = new Config()
            .WithFuelConsumption(fuel)
            .WithEpochInterruption(epochs)
            .WithMaximumStackSize(MaxWasmStack);
        var before = VirtualMemoryBytes();
        using (var pooling = pool?.ToConfig())
        using (config)
        {
            if (pooling is not null)
            {
                config.WithPoolingAllocationStrategy(pooling);
            }

            Engine = new Engine(config);
        }

        ReservedBytes = pool is null ? 0 : Math.Max(0, VirtualMemoryBytes() - before);
        Fuel = fuel;
        Epochs = epochs;
        Pool = pool;
        ConfigKey = string.Create(CultureInfo.InvariantCulture, $"wasmtime-{WasmtimeVersion};fuel={fuel};epochs={epochs};stack={MaxWasmStack}");
        if (epochs)
        {
            // A thread of its own rather than a System.Threading.Timer: a timer's tick wakes the runtime's timer thread,
            // which queues the callback and wakes a pool worker, which wakes another looking for more work. An idle
            // proplet spent ~2 % of a core and ~880 context switches a second on that; this is one wake per tick, and
            // none while no lease is held.
            _ticker = new Thread(Tick) { IsBackground = true, Name = "wasm epoch" };
            _ticker.Start();
        }
    }

    /// <summary>
    /// The engine every task and plugin of this process shares (fuel and epochs on), on the pooling allocator chosen by
    /// <see cref="ConfigureShared"/> (Wasmtime's defaults with 64 KiB kept resident when nothing configured it). When
    /// the pool cannot be reserved (a small address space, <c>ulimit -v</c>) it is the on-demand engine and
    /// <see cref="PoolFailure"/> says why.
    /// </summary>
    public static WasmEngine Shared => s_shared.Value;

    /// <summary>Why the shared engine is not pooled although a pool was asked for; null otherwise.</summary>
    public static string? PoolFailure { get; private set; }

    /// <summary>
    /// Chooses the shared engine's pool (null: Wasmtime's on-demand allocator) before its first use. The engine is one
    /// per process: until its first use each configuration replaces the one before (the last before it wins; the only
    /// caller, InProcessRuntime, uses the engine at once); from then on a configuration waits for its creation and is
    /// false when it has another pool (a second proplet in a test process).
    /// </summary>
    public static bool ConfigureShared(WasmPool? pool)
    {
        lock (s_gate)
        {
            if (!s_sharedStarted)
            {
                s_sharedPool = pool;
                return true;
            }
        }

        return Equals(s_shared.Value.Pool, pool);
    }

    /// <summary>The pooling allocator's limits, or null on the on-demand allocator.</summary>
    public WasmPool? Pool { get; }

    /// <summary>Address space the pool reserved at creation (VmSize growth), 0 on the on-demand allocator.</summary>
    public long ReservedBytes { get; }

    /// <summary>One line for the start-up log: the allocator and what it reserved.</summary>
    public string Allocator => Pool is { } pool
        ? string.Create(CultureInfo.InvariantCulture, $"{pool}; {ReservedBytes / (double)(1L << 30):0.#} GiB of address space reserved")
        : "on-demand" + (PoolFailure is { } why ? $" (pooling allocator unavailable: {why})" : "");

    public Engine Engine { get; }

    public bool Fuel { get; }

    public bool Epochs { get; }

    /// <summary>The settings compiled code depends on: part of the disk cache key (Wasmtime refuses code from another config).</summary>
    public string ConfigKey { get; }

    /// <summary>Leases held now: the ticker ticks while this is above 0.</summary>
    public int Leases
    {
        get
        {
            lock (_leaseGate)
            {
                return _leases;
            }
        }
    }

    /// <summary>How many times the ticker has advanced the epoch since the engine was made.</summary>
    public long Ticks => Interlocked.Read(ref _ticks);

    private static WasmEngine CreateShared()
    {
        WasmPool? pool;
        lock (s_gate)
        {
            s_sharedStarted = true;
            pool = s_sharedPool;
        }

        if (pool is not null)
        {
            try
            {
                return new WasmEngine(fuel: true, epochs: true, pool);
            }
            catch (WasmtimeException e)
            {
                PoolFailure = WasmErrors.Reason(e);
            }
        }

        return new WasmEngine(fuel: true, epochs: true);
    }

    private static long VirtualMemoryBytes()
    {
        try
        {
            var line = File.ReadLines("/proc/self/status").FirstOrDefault(l => l.StartsWith("VmSize:", StringComparison.Ordinal));
            return line is null ? 0 : long.Parse(line.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) << 10;
        }
        catch (IOException)
        {
            return 0;
        }
        catch (UnauthorizedAccessException)
        {
            return 0;
        }
    }

    private static string WasmtimeVersion =>
        typeof(Engine).Assembly.GetName().Version?.ToString() ?? "unknown";

    /// <summary>
    /// Arms <paramref name="store"/> so <paramref name="check"/> runs on the guest's thread at every epoch tick while
    /// its guest code runs; <paramref name="check"/> throws to end the guest (the call then fails with a
    /// <see cref="WasmtimeException"/> whose InnerException is what it threw) or returns to let it go on. The ticker
    /// ticks until the returned lease is disposed: hold it while the store runs guest code (dispose it with the store,
    /// or after the calls made now, and take <see cref="KeepTicking"/> around later calls on the same store). A guest
    /// that runs with no lease held is not interrupted.
    /// </summary>
    public EpochLease Watch(Store store, Action check)
    {
        ArgumentNullException.ThrowIfNull(store);
        ArgumentNullException.ThrowIfNull(check);

        // A plain deadline is relative to the epoch when it is set and would trap a call made a tick later; the
        // callback instead runs at each tick and sets the next deadline one tick on.
        store.SetEpochDeadline(1);
        store.SetEpochDeadlineCallback(_ =>
        {
            check();
            return 1;
        });
        return KeepTicking();
    }

    /// <summary>
    /// A lease that keeps the ticker ticking until it is disposed (disposing it twice releases it once): for calls on
    /// a store armed by <see cref="Watch"/> whose own lease has been released. On an engine without epochs it does
    /// nothing.
    /// </summary>
    public EpochLease KeepTicking()
    {
        if (_ticker is null)
        {
            return EpochLease.None;
        }

        lock (_leaseGate)
        {
            ObjectDisposedException.ThrowIf(_disposed != 0, this);
            if (_leases++ == 0)
            {
                _leased.Set();
            }
        }

        return new EpochLease(this);
    }

    internal void Release()
    {
        lock (_leaseGate)
        {
            if (--_leases == 0 && _disposed == 0)
            {
                _leased.Reset();
            }
        }
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _stopTicking.Set();
        _ticker?.Join();
        _stopTicking.Dispose();
        lock (_leaseGate)
        {
            _leased.Dispose(); // a lease released after this sees _disposed
        }

        Engine.Dispose();
    }

    private void Tick()
    {
        WaitHandle[] idle = [_stopTicking, _leased];

        // Blocks while no lease is held (no wake-ups at all); _leased is set whenever one is, so a guest never runs
        // under a blocked ticker. After the last lease goes it ticks LingerTicks more: a proplet running task after
        // task keeps one steady tick instead of waking this thread for each task.
        while (WaitHandle.WaitAny(idle) != 0)
        {
            for (var quiet = 0; quiet < LingerTicks; quiet = Volatile.Read(ref _leases) == 0 ? quiet + 1 : 0)
            {
                if (_stopTicking.WaitOne(EpochTick))
                {
                    return;
                }

                Engine.IncrementEpoch();
                Interlocked.Increment(ref _ticks);
            }
        }
    }
}
