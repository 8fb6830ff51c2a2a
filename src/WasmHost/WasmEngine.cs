using System.Globalization;
using Wasmtime;

namespace Propeller.WasmHost;

/// <summary>
/// The process's Wasmtime <see cref="Wasmtime.Engine"/> (ADR 0007): fuel metering and epoch interruption compiled in, and
/// one ticker that advances the epoch every <see cref="EpochTick"/>. A store armed with <see cref="Watch"/> calls its
/// check at every tick while guest code runs, so a stop or a timeout ends the guest within about one tick.
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

    private static readonly Lazy<WasmEngine> s_shared = new(() => new WasmEngine(fuel: true, epochs: true));

    private readonly Timer? _ticker;

    public WasmEngine(bool fuel, bool epochs)
    {
        using var config = new Config()
            .WithFuelConsumption(fuel)
            .WithEpochInterruption(epochs)
            .WithMaximumStackSize(MaxWasmStack);
        Engine = new Engine(config);
        Fuel = fuel;
        Epochs = epochs;
        ConfigKey = string.Create(CultureInfo.InvariantCulture, $"wasmtime-{WasmtimeVersion};fuel={fuel};epochs={epochs};stack={MaxWasmStack}");
        if (epochs)
        {
            _ticker = new Timer(static e => ((Engine)e!).IncrementEpoch(), Engine, EpochTick, EpochTick);
        }
    }

    /// <summary>The engine every task and plugin of this process shares (fuel and epochs on).</summary>
    public static WasmEngine Shared => s_shared.Value;

    public Engine Engine { get; }

    public bool Fuel { get; }

    public bool Epochs { get; }

    /// <summary>The settings compiled code depends on: part of the disk cache key (Wasmtime refuses code from another config).</summary>
    public string ConfigKey { get; }

    private static string WasmtimeVersion =>
        typeof(Engine).Assembly.GetName().Version?.ToString() ?? "unknown";

    /// <summary>
    /// Arms <paramref name="store"/> so <paramref name="check"/> runs on the guest's thread at every epoch tick while
    /// its guest code runs; <paramref name="check"/> throws to end the guest (the call then fails with a
    /// <see cref="WasmtimeException"/> whose InnerException is what it threw) or returns to let it go on.
    /// </summary>
    public static void Watch(Store store, Action check)
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
    }

    public void Dispose()
    {
        _ticker?.Dispose();
        Engine.Dispose();
    }
}
