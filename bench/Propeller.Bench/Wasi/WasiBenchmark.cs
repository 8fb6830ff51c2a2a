using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;
using Propeller.Wasm;
using Propeller.Wasm.Wasi;

namespace Propeller.Bench;

/// <summary>
/// `wasi` (issue 5), three parts:
/// 1. WASI builds of the bench/wasm-kernels kernels (kernel.c + Wasi/wasi_main.c, built here with
///    `clang --target=wasm32-wasi -O2`), timed inside the guest with clock_gettime, on this engine and on node
///    --no-liftoff: `wasi case=&lt;kernel&gt; engine_ms=&lt;n&gt; v8_ms=&lt;m&gt; ratio=&lt;r&gt;` and the geomean.
/// 2. The cost of each limit on the plain kernels (best of N calls of `run`, no limits vs fuel vs epoch checks compiled
///    in): `wasi case=overhead fuel=&lt;x&gt; epoch=&lt;y&gt;` (geomean ratios to no limits).
/// 3. `wasm case=instantiate us=&lt;n&gt;`: instantiating a compiled small module (fib.wasm) into an existing store.
/// Options: --iterations N (default 5).
/// </summary>
internal static partial class WasiBenchmark
{
    private static readonly string[] Kernels = ["fib", "sieve", "matmul", "sha256"];

    public static async Task<int> RunAsync(string[] args, CancellationToken cancellationToken)
    {
        var iterations = 5;
        for (var i = 0; i < args.Length - 1; i++)
        {
            if (args[i] == "--iterations")
            {
                iterations = int.Parse(args[++i], CultureInfo.InvariantCulture);
            }
        }

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

        // 2. Cost of fuel and epoch checks on the plain kernels: the three variants run interleaved, best of N each, so
        // load from other processes on the machine hits them alike.
        var fuelRatios = new List<double>();
        var epochRatios = new List<double>();
        foreach (var kernel in Kernels)
        {
            var bytes = await File.ReadAllBytesAsync(Path.Combine(kernels, kernel + ".wasm"), cancellationToken);
            var (none, fuel, epoch) = BestOfKernel(bytes, iterations * 2);
            fuelRatios.Add(fuel / none);
            epochRatios.Add(epoch / none);
            Console.WriteLine(FormattableString.Invariant(
                $"wasi case=overhead kernel={kernel} none_ms={none:F2} fuel_ms={fuel:F2} epoch_ms={epoch:F2} fuel={fuel / none:F2} epoch={epoch / none:F2}"));
        }

        Console.WriteLine(FormattableString.Invariant(
            $"wasi case=overhead fuel={Geomean(fuelRatios):F2} epoch={Geomean(epochRatios):F2}"));

        // 3. Instantiation of a cached small module.
        var (instantiateUs, lookupUs) = MeasureInstantiate(await File.ReadAllBytesAsync(Path.Combine(kernels, "fib.wasm"), cancellationToken));
        Console.WriteLine(FormattableString.Invariant($"wasm case=instantiate us={instantiateUs:F1} cache_lookup_us={lookupUs:F1}"));
        return ok ? 0 : 1;
    }

    private static double Geomean(List<double> values) => Math.Exp(values.Sum(Math.Log) / values.Count);

    private static string RunOnEngine(string wasm, int iterations)
    {
        using var engine = new Engine();
        using var store = new Store(engine);
        var stdout = new WasiOutputBuffer(1 << 16);
        var context = new WasiContext(new WasiConfiguration()
            .WithArgs(Path.GetFileName(wasm), iterations.ToString(CultureInfo.InvariantCulture))
            .WithStandardOutput(stdout));
        var linker = new Linker(engine);
        context.DefineIn(linker);
        var instance = linker.Instantiate(store, Module.FromFile(engine, wasm));
        var code = context.RunStart(instance);
        return code == 0 ? stdout.ToString() : throw new InvalidOperationException($"{wasm} exited with {code}");
    }

    private static (double Ms, string Checksum) Parse(string output)
    {
        var match = OutputLine().Match(output);
        return match.Success
            ? (double.Parse(match.Groups[2].Value, CultureInfo.InvariantCulture), match.Groups[1].Value)
            : throw new InvalidOperationException("unexpected kernel output: " + output);
    }

    private static (double None, double Fuel, double Epoch) BestOfKernel(byte[] bytes, int iterations)
    {
        Config[] configs = [new Config(), new Config().WithConsumeFuel(true), new Config().WithEpochInterruption(true)];
        var engines = configs.Select(c => new Engine(c)).ToArray();
        var stores = engines.Select(e => new Store(e)).ToArray();
        try
        {
            var runs = new Function[3];
            for (var v = 0; v < 3; v++)
            {
                stores[v].SetFuel(long.MaxValue / 2);
                runs[v] = new Instance(stores[v], Module.FromBytes(engines[v], "kernel", bytes)).GetFunction("run")!;
                runs[v].Call();
            }

            var best = new[] { double.MaxValue, double.MaxValue, double.MaxValue };
            for (var i = 0; i < iterations; i++)
            {
                for (var v = 0; v < 3; v++)
                {
                    var clock = Stopwatch.StartNew();
                    runs[v].Call();
                    best[v] = Math.Min(best[v], clock.Elapsed.TotalMilliseconds);
                }
            }

            return (best[0], best[1], best[2]);
        }
        finally
        {
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
    /// Average µs to instantiate a compiled (cached) module into an existing store from the store's own thread, and
    /// separately the µs of the engine-cache lookup by module bytes (SHA-256) that Module.FromBytes adds.
    /// </summary>
    private static (double Instantiate, double Lookup) MeasureInstantiate(byte[] bytes)
    {
        using var engine = new Engine();
        using var store = new Store(engine);
        var linker = new Linker(engine);
        var module = Module.FromBytes(engine, "small", bytes);
        return store.Run(() =>
        {
            const int count = 2_000;
            for (var i = 0; i < 200; i++)
            {
                linker.Instantiate(store, module);
            }

            var clock = Stopwatch.StartNew();
            for (var i = 0; i < count; i++)
            {
                linker.Instantiate(store, module);
            }

            var instantiate = clock.Elapsed.TotalMicroseconds / count;
            clock.Restart();
            for (var i = 0; i < count; i++)
            {
                Module.FromBytes(engine, "small", bytes);
            }

            return (instantiate, clock.Elapsed.TotalMicroseconds / count);
        });
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
