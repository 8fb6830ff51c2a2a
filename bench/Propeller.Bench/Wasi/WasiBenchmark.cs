using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;
using Propeller.Bench.Support;
using Propeller.WasmHost;
using Wasmtime;

namespace Propeller.Bench;

/// <summary>
/// `wasi` (issue 5), three parts:
/// 1. WASI builds of the bench/wasm-kernels kernels (kernel.c + Wasi/wasi_main.c, built here with
///    `clang --target=wasm32-wasi -O2`), timed inside the guest with clock_gettime, on Wasmtime and on node
///    --no-liftoff: `wasi case=&lt;kernel&gt; engine_ms=&lt;n&gt; v8_ms=&lt;m&gt; ratio=&lt;r&gt;` and the geomean.
/// 2. The cost of each limit on the plain kernels (best of N calls of `run`, no limits vs fuel vs epoch checks compiled
///    in, the epoch ticker running): `wasi case=overhead fuel=&lt;x&gt; epoch=&lt;y&gt; both=&lt;z&gt;` (geomean ratios).
/// 3. `wasm case=instantiate`: a cached small module (the demo's addition) through the module cache, a new store,
///    instantiation, the export lookup and one call: p50/p99 µs, bare and as a proplet task does it (WASI, fuel, epochs).
/// Options: --iterations N (default 5).
/// </summary>
internal static partial class WasiBenchmark
{
    private static readonly string[] Kernels = ["fib", "sieve", "matmul", "sha256"];

    public static async Task<int> RunAsync(string[] args, CancellationToken cancellationToken)
    {
        BenchArgs.Known(args, ["--iterations"]);
        var iterations = BenchArgs.Int(args, "--iterations", 5);

        var bench = FindBench();
        var kernels = Path.Combine(bench, "wasm-kernels");
        var wasiDir = Path.Combine(bench, "Propeller.Bench", "Wasi");
        var ok = true;

        // 1. WASI kernels, engine vs V8.
        var build = Directory.CreateTempSubdirectory("wasi-bench");
        try
        {
            var ratios = new List<double>();
            foreach (var kernel in Kernels)
            {
                var wasm = Path.Combine(build.FullName, kernel + ".wasm");
                await ExecAsync("clang", ["--target=wasm32-wasi", "-O2", "-fno-builtin", Path.Combine(kernels, kernel + ".c"),
                    Path.Combine(wasiDir, "wasi_main.c"), "-o", wasm], cancellationToken);
                var (engineMs, engineSum) = Parse(RunOnEngine(wasm, iterations));
                var (v8Ms, v8Sum) = Parse(await ExecAsync(
                    "node", ["--no-liftoff", Path.Combine(wasiDir, "run-wasi-node.mjs"), wasm, iterations.ToString(CultureInfo.InvariantCulture)],
                    cancellationToken));
                if (engineSum != v8Sum)
                {
                    ok = false;
                    Console.WriteLine($"wasi case={kernel} checksum mismatch: engine={engineSum} v8={v8Sum}");
                }

                ratios.Add(engineMs / v8Ms);
                Console.WriteLine(FormattableString.Invariant(
                    $"wasi case={kernel} engine_ms={engineMs:F2} v8_ms={v8Ms:F2} ratio={engineMs / v8Ms:F2} checksum={engineSum}"));
            }

            Console.WriteLine(FormattableString.Invariant($"wasi case=geomean ratio={Geomean(ratios):F2}"));
        }
        finally
        {
            build.Delete(true);
        }

        // 2. Cost of fuel and epoch checks on the plain kernels: the variants run interleaved, best of N each, so load
        // from other processes on the machine hits them alike.
        var fuelRatios = new List<double>();
        var epochRatios = new List<double>();
        var bothRatios = new List<double>();
        foreach (var kernel in Kernels)
        {
            var bytes = await File.ReadAllBytesAsync(Path.Combine(kernels, kernel + ".wasm"), cancellationToken);
            var best = BestOfKernel(bytes, iterations * 2);
            fuelRatios.Add(best[1] / best[0]);
            epochRatios.Add(best[2] / best[0]);
            bothRatios.Add(best[3] / best[0]);
            Console.WriteLine(FormattableString.Invariant(
                $"wasi case=overhead kernel={kernel} none_ms={best[0]:F2} fuel_ms={best[1]:F2} epoch_ms={best[2]:F2} both_ms={best[3]:F2} fuel={best[1] / best[0]:F2} epoch={best[2] / best[0]:F2} both={best[3] / best[0]:F2}"));
        }

        Console.WriteLine(FormattableString.Invariant(
            $"wasi case=overhead fuel={Geomean(fuelRatios):F2} epoch={Geomean(epochRatios):F2} both={Geomean(bothRatios):F2}"));

        // 3. Instantiation of a cached small module, and one call.
        var addition = Convert.FromBase64String("AGFzbQEAAAABBwFgAn9/AX8DAgEABwgBBG1haW4AAAoJAQcAIAAgAWoL");
        var (bare50, bare99) = MeasureInstantiate(addition, proplet: false);
        var (task50, task99) = MeasureInstantiate(addition, proplet: true);
        Console.WriteLine(FormattableString.Invariant(
            $"wasm case=instantiate p50_us={bare50:F1} p99_us={bare99:F1} proplet_p50_us={task50:F1} proplet_p99_us={task99:F1} target_us=10"));
        return ok ? 0 : 1;
    }

    private static double Geomean(List<double> values) => Math.Exp(values.Sum(Math.Log) / values.Count);

    private static string RunOnEngine(string wasm, int iterations)
    {
        using var engine = new WasmEngine(fuel: false, epochs: false);
        using var store = new Store(engine.Engine);
        var stdout = new MemoryStream();
        store.SetWasiConfiguration(new WasiConfiguration()
            .WithArgs(Path.GetFileName(wasm), iterations.ToString(CultureInfo.InvariantCulture))
            .WithStandardOutputCallback(data => stdout.Write(data)));
        using var linker = new Linker(engine.Engine);
        linker.DefineWasi();
        using var module = Module.FromFile(engine.Engine, wasm);
        try
        {
            linker.Instantiate(store, module).GetAction("_start")!();
        }
        catch (WasmtimeException exit) when (exit.ExitCode is { } code)
        {
            if (code != 0)
            {
                throw new InvalidOperationException($"{wasm} exited with {code}", exit);
            }
        }

        return System.Text.Encoding.UTF8.GetString(stdout.ToArray());
    }

    private static (double Ms, string Checksum) Parse(string output)
    {
        var match = OutputLine().Match(output);
        return match.Success
            ? (double.Parse(match.Groups[2].Value, CultureInfo.InvariantCulture), match.Groups[1].Value)
            : throw new InvalidOperationException("unexpected kernel output: " + output);
    }

    /// <summary>Best ms of `run` with no limits, fuel, epoch checks (ticker running), and both, in that order.</summary>
    private static double[] BestOfKernel(byte[] bytes, int iterations)
    {
        var engines = new[]
        {
            new WasmEngine(fuel: false, epochs: false), new WasmEngine(fuel: true, epochs: false),
            new WasmEngine(fuel: false, epochs: true), new WasmEngine(fuel: true, epochs: true),
        };
        var stores = engines.Select(e => new Store(e.Engine)).ToArray();
        var leases = new List<EpochLease>();
        try
        {
            var runs = new Func<int>[engines.Length];
            for (var v = 0; v < engines.Length; v++)
            {
                if (engines[v].Fuel)
                {
                    stores[v].Fuel = ulong.MaxValue / 2;
                }

                if (engines[v].Epochs)
                {
                    leases.Add(engines[v].Watch(stores[v], static () => { })); // ticking through the measurement, as while a task runs
                }

                using var linker = new Linker(engines[v].Engine);
                runs[v] = linker.Instantiate(stores[v], Module.FromBytes(engines[v].Engine, "kernel", bytes)).GetFunction<int>("run")!;
                runs[v]();
            }

            var best = Enumerable.Repeat(double.MaxValue, engines.Length).ToArray();
            for (var i = 0; i < iterations; i++)
            {
                for (var v = 0; v < engines.Length; v++)
                {
                    var clock = Stopwatch.StartNew();
                    runs[v]();
                    best[v] = Math.Min(best[v], clock.Elapsed.TotalMilliseconds);
                }
            }

            return best;
        }
        finally
        {
            leases.ForEach(lease => lease.Dispose());
            foreach (var store in stores)
            {
                store.Dispose();
            }

            foreach (var engine in engines)
            {
                engine.Dispose();
            }
        }
    }

    /// <summary>
    /// p50 and p99 µs of: module cache lookup (SHA-256 of the bytes), a new store with fuel and the epoch check,
    /// instantiation, the export lookup and one call. proplet adds the WASI configuration a proplet task's store gets.
    /// </summary>
    private static (double P50, double P99) MeasureInstantiate(byte[] bytes, bool proplet)
    {
        var engine = WasmEngine.Shared;
        var cache = new ModuleCache(engine);
        using var linker = new Linker(engine.Engine);
        linker.DefineWasi();
        const int count = 20_000;
        var samples = new double[count];
        for (var i = -2_000; i < count; i++)
        {
            var started = Stopwatch.GetTimestamp();
            var module = cache.GetOrCompile("small", bytes);
            using var store = new Store(engine.Engine);
            store.Fuel = 1_000_000;

            // Every store of an engine with epochs needs a deadline, else the first tick traps it; the lease is the task's.
            using var ticking = engine.Watch(store, static () => { });
            if (proplet)
            {
                store.SetWasiConfiguration(new WasiConfiguration().WithArgs("main").WithEnvironmentVariable("PROPLET_ID", "bench"));
            }

            var main = linker.Instantiate(store, module).GetFunction<int, int, int>("main")!;
            if (main(40, 2) != 42)
            {
                throw new InvalidOperationException("main(40, 2) != 42");
            }

            if (i >= 0)
            {
                samples[i] = Stopwatch.GetElapsedTime(started).TotalMicroseconds;
            }
        }

        Array.Sort(samples);
        return (samples[count / 2], samples[count * 99 / 100]);
    }

    private static async Task<string> ExecAsync(string tool, string[] arguments, CancellationToken cancellationToken)
    {
        var psi = new ProcessStartInfo(tool) { RedirectStandardOutput = true, UseShellExecute = false };
        foreach (var argument in arguments)
        {
            psi.ArgumentList.Add(argument);
        }

        using var process = Process.Start(psi) ?? throw new InvalidOperationException(tool + " did not start");
        var output = await process.StandardOutput.ReadToEndAsync(cancellationToken);
        await process.WaitForExitAsync(cancellationToken);
        return process.ExitCode == 0 ? output : throw new InvalidOperationException($"{tool} exited with {process.ExitCode}");
    }

    private static string FindBench()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            var candidate = Path.Combine(dir.FullName, "bench", "wasm-kernels");
            if (Directory.Exists(candidate))
            {
                return Path.Combine(dir.FullName, "bench");
            }
        }

        throw new DirectoryNotFoundException("bench/wasm-kernels not found above " + AppContext.BaseDirectory);
    }

    [GeneratedRegex(@"checksum=(\d+) best_ms=([0-9.]+)")]
    private static partial Regex OutputLine();
}
