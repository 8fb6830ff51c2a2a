using System.Diagnostics;
using System.Globalization;
using Microsoft.Extensions.Logging.Abstractions;
using Propeller.Bench.Support;
using Propeller.Contracts.Mqtt;
using Propeller.Edge.Configuration;
using Propeller.Edge.Execution;
using Propeller.Edge.Tasks;
using Wasmtime;

namespace Propeller.Bench;

/// <summary>
/// `components`: one invocation of a latent component task through the proplet's runtime (InProcessRuntime.InvokeAsync:
/// guest-thread hop, new store with WASI preview 2, fuel and the epoch check, instantiate, WAVE parse of the inputs, the
/// call, WAVE encoding of the result) against the same call of a cached core module (RunAsync of the demo's `main`), in
/// the same run. Prints `components case=add component_p50_us=… core_p50_us=… ratio=…` and a string case.
/// Options: --iterations N (default 20000).
/// </summary>
internal static class ComponentBenchmark
{
    private const string AdditionBase64 = "AGFzbQEAAAABBwFgAn9/AX8DAgEABwgBBG1haW4AAAoJAQcAIAAgAWoL";

    public static async Task<int> RunAsync(string[] args, CancellationToken cancellationToken)
    {
        BenchArgs.Known(args, ["--iterations"], ["--raw"]);
        var iterations = BenchArgs.Int(args, "--iterations", 20000);

        var settings = new PropletSettings { TenantId = "t", ChannelId = "c", EntityId = "bench", ApiKey = "k", MetricsEnabled = false };
        using var runtime = new InProcessRuntime(settings, NullLogger<InProcessRuntime>.Instance);
        var calculator = Module.ConvertText(await File.ReadAllTextAsync(TestComponents.Find("calculator.wat"), cancellationToken));
        var core = Convert.FromBase64String(AdditionBase64);

        foreach (var (name, inputs, expected) in new[]
        {
            ("add", new[] { "40", "2" }, "42"),
            ("echo-string", new[] { "\"world\"" }, "\"world\""),
            ("propeller:test/greeter@0.1.0#greet", new[] { "\"world\"" }, "\"Hello, world\""),
        })
        {
            var component = await MeasureAsync(iterations, name, inputs, expected, async task =>
            {
                var prepared = runtime.Prepare(task, calculator).Prepared!;
                return () => runtime.InvokeAsync(task, prepared, cancellationToken);
            });
            var reference = await MeasureAsync(iterations, "main", ["40", "2"], "42", task =>
                Task.FromResult<Func<Task<TaskOutcome>>>(() => runtime.RunAsync(task, core, cancellationToken)));
            Console.WriteLine(FormattableString.Invariant(
                $"components case={name} component_p50_us={component.P50:F1} component_p99_us={component.P99:F1} core_p50_us={reference.P50:F1} ratio={component.P50 / reference.P50:F2}"));
        }

        if (args.Contains("--raw"))
        {
            Raw(calculator, iterations);
        }

        return 0;
    }

    /// <summary>
    /// --raw: where a string call's time goes, on the wrapper alone (fresh store per call, and one store reused), on the
    /// on-demand allocator, on the shared engine (pooled, ADR 0011) and on other pooling configurations: the virtual memory each
    /// reserves and the component instance at which its pool runs out (ADR 0011).
    /// </summary>
    private static void Raw(byte[] calculator, int iterations)
    {
        using (var onDemand = new Propeller.WasmHost.WasmEngine(fuel: true, epochs: true))
        {
            Raw(calculator, iterations, onDemand.Engine, "on-demand", onDemand);
        }

        Raw(calculator, iterations, Propeller.WasmHost.WasmEngine.Shared.Engine, "shared", Propeller.WasmHost.WasmEngine.Shared);
        Console.WriteLine(FormattableString.Invariant($"components raw=pool allocator=shared \"{Propeller.WasmHost.WasmEngine.Shared.Allocator}\""));

        var pools = new (string Name, Func<PoolingAllocationConfig, PoolingAllocationConfig> Pool, ulong? Reservation)[]
        {
            ("pooling-defaults", p => p, null),
            ("pooling-keep64k", p => p.WithLinearMemoryKeepResidentBytes(64 << 10).WithMaxUnusedWarmSlots(100), null),
            ("pooling-keep1m", p => p.WithLinearMemoryKeepResidentBytes(1 << 20).WithMaxUnusedWarmSlots(100), null),
            ("pooling-64slots-256mib", p => p.WithLinearMemoryKeepResidentBytes(64 << 10).WithMaxUnusedWarmSlots(64)
                .WithTotalComponentInstances(64).WithMaxCoreInstances(64).WithMaxMemories(64).WithMaxMemorySize(256 << 20), 256 << 20),
        };
        foreach (var (name, configure, reservation) in pools)
        {
            var before = VirtualMemoryKib();
            using var pool = configure(new PoolingAllocationConfig());
            var config = new Config().WithFuelConsumption(true).WithEpochInterruption(true).WithPoolingAllocationStrategy(pool);
            if (reservation is { } bytes)
            {
                config = config.WithStaticMemoryMaximumSize(bytes);
            }

            using (config)
            {
                using var pooled = new Engine(config);
                Raw(calculator, iterations, pooled, name, null);
                Console.WriteLine(FormattableString.Invariant(
                    $"components raw=pool allocator={name} reserved_gib={(VirtualMemoryKib() - before) / 1048576.0:F0} exhausted_at={Exhaust(calculator, pooled)}"));
            }
        }
    }

    /// <summary>Holds instances until instantiation fails (at most 2,000); the count reached and Wasmtime's message.</summary>
    private static string Exhaust(byte[] calculator, Engine engine)
    {
        using var component = Wasmtime.Components.Component.FromBytes(engine, calculator);
        using var linker = new Wasmtime.Components.ComponentLinker(engine);
        linker.AddWasiPreview2();
        var held = new List<Store>();
        try
        {
            while (held.Count < 2000)
            {
                var store = new Store(engine);
                held.Add(store);
                store.SetWasiConfiguration(new WasiConfiguration());
                store.Fuel = ulong.MaxValue / 2;
                Arm(store, null);
                linker.Instantiate(store, component);
            }

            return "none";
        }
        catch (WasmtimeException e)
        {
            return FormattableString.Invariant($"{held.Count} \"{e.Message}\"");
        }
        finally
        {
            held.ForEach(store => store.Dispose());
        }
    }

    private static long VirtualMemoryKib() =>
        long.Parse(File.ReadLines("/proc/self/status").First(line => line.StartsWith("VmSize:", StringComparison.Ordinal))
            .Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture);

    /// <param name="ticking">The engine's <see cref="Propeller.WasmHost.WasmEngine"/>, or null for a raw pooled engine (no ticker).</param>
    private static void Raw(byte[] calculator, int iterations, Engine engine, string allocator, Propeller.WasmHost.WasmEngine? ticking)
    {
        using var component = Wasmtime.Components.Component.FromBytes(engine, calculator);
        using var linker = new Wasmtime.Components.ComponentLinker(engine);
        linker.AddWasiPreview2();
        foreach (var (name, argument) in new[] { ("echo-u32", Wasmtime.Components.ComponentValue.U32(7)), ("echo-string", Wasmtime.Components.ComponentValue.String("world")) })
        {
            var fresh = Percentile(iterations, () =>
            {
                using var store = new Store(engine);
                store.SetWasiConfiguration(new WasiConfiguration());
                store.Fuel = ulong.MaxValue / 2;
                using var lease = Arm(store, ticking);
                linker.Instantiate(store, component).GetFunction(name)!.Call(argument);
            });
            using var kept = new Store(engine);
            kept.SetWasiConfiguration(new WasiConfiguration());
            kept.Fuel = ulong.MaxValue / 2;
            using var keptLease = Arm(kept, ticking);
            var function = linker.Instantiate(kept, component).GetFunction(name)!;
            var reused = Percentile(iterations, () => function.Call(argument));
            Console.WriteLine(FormattableString.Invariant($"components raw={name} allocator={allocator} fresh_store_p50_us={fresh:F1} reused_store_p50_us={reused:F1}"));
        }
    }

    /// <summary>
    /// The epoch check a product store gets: <see cref="Propeller.WasmHost.WasmEngine.Watch"/> with its lease on a
    /// WasmEngine; on a raw engine, which has no ticker, the same deadline and callback without one.
    /// </summary>
    private static IDisposable? Arm(Store store, Propeller.WasmHost.WasmEngine? ticking)
    {
        if (ticking is not null)
        {
            return ticking.Watch(store, static () => { });
        }

        store.SetEpochDeadline(1);
        store.SetEpochDeadlineCallback(static _ => 1);
        return null;
    }

    private static double Percentile(int iterations, Action call)
    {
        var samples = new double[iterations];
        var clock = new Stopwatch();
        for (var i = 0; i < iterations; i++)
        {
            clock.Restart();
            call();
            samples[i] = clock.Elapsed.TotalMicroseconds;
        }

        Array.Sort(samples);
        return samples[iterations / 2];
    }

    private static async Task<(double P50, double P99)> MeasureAsync(
        int iterations, string name, string[] inputs, string expected, Func<RunningTask, Task<Func<Task<TaskOutcome>>>> prepare)
    {
        using var task = new RunningTask(new StartRequest(
            new StartMessage { Id = "bench", Name = name, Inputs = inputs }, new TaskLimits(null, null, null), MonitoringProfile.Standard));
        var call = await prepare(task);
        var outcome = await call();
        if (outcome.Results != expected)
        {
            throw new InvalidOperationException($"{name}: expected {expected}, got {outcome.Results} {outcome.Error}");
        }

        for (var i = 0; i < Math.Min(iterations, 2000); i++)
        {
            await call();
        }

        var samples = new double[iterations];
        var clock = new Stopwatch();
        for (var i = 0; i < iterations; i++)
        {
            clock.Restart();
            await call();
            samples[i] = clock.Elapsed.TotalMicroseconds;
        }

        Array.Sort(samples);
        return (samples[iterations / 2], samples[iterations * 99 / 100]);
    }
}
