using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Propeller.Bench.Support;
using Propeller.WasmHost;
using Wasmtime;

namespace Propeller.Bench;

/// <summary>
/// `wasm`: runs the C kernels in bench/wasm-kernels (same .wasm bytes) on Wasmtime (no fuel, no epochs) and on node
/// --no-liftoff (V8's optimising tier), best of N calls to the exported `run` after one warm-up each, checksums compared.
/// Prints `wasm case=&lt;kernel&gt; engine_ms=&lt;n&gt; v8_ms=&lt;m&gt; ratio=&lt;n/m&gt;`, the geomean, and the compile throughput.
/// Options: --iterations N (default 5), --kernels DIR.
/// </summary>
internal static class WasmBenchmark
{
    private static readonly string[] Kernels = ["fib", "sieve", "matmul", "sha256"];

    public static async Task<int> RunAsync(string[] args, CancellationToken cancellationToken)
    {
        BenchArgs.Known(args, ["--iterations", "--kernels"]);
        var iterations = BenchArgs.Int(args, "--iterations", 5);
        var directory = BenchArgs.Value(args, "--kernels");

        directory ??= FindKernels();
        var ratios = new List<double>();
        var ok = true;
        foreach (var kernel in Kernels)
        {
            var file = Path.Combine(directory, kernel + ".wasm");
            var bytes = await File.ReadAllBytesAsync(file, cancellationToken);
            var (engineMs, firstMs, checksum) = RunEngine(bytes, iterations, null);
            // The same kernel on a pooling-allocator engine as the shared one is (ADR 0011): guest code must not slow down.
            var (pooledMs, pooledFirstMs, _) = RunEngine(bytes, iterations, new WasmPool());
            var (v8Ms, v8Checksum) = await RunNodeAsync(directory, file, iterations, cancellationToken);
            var ratio = engineMs / v8Ms;
            ratios.Add(ratio);
            if (checksum != v8Checksum)
            {
                ok = false;
                Console.WriteLine($"wasm case={kernel} checksum mismatch: engine={checksum} v8={v8Checksum}");
            }

            Console.WriteLine(FormattableString.Invariant(
                $"wasm case={kernel} engine_ms={engineMs:F2} v8_ms={v8Ms:F2} ratio={ratio:F2} engine_first_ms={firstMs:F2} pooled_ms={pooledMs:F2} pooled_first_ms={pooledFirstMs:F2} pooled_ratio={pooledMs / engineMs:F2}"));
        }

        var geomean = Math.Exp(ratios.Sum(Math.Log) / ratios.Count);
        Console.WriteLine(FormattableString.Invariant($"wasm case=geomean ratio={geomean:F2} max_ratio={ratios.Max():F2}"));
        // Compile throughput: Cranelift compiles the whole module ahead of the first call.
        // The kernels are tiny, so the real-world Rust/C binaries of the WASI testsuite are used too when they are present.
        var corpus = Directory.GetFiles(directory, "*.wasm").ToList();
        var wasi = Path.Combine(directory, "..", "..", "..", "shared", "testdata", "wasi-testsuite");
        if (Directory.Exists(wasi))
        {
            corpus.AddRange(Directory.GetFiles(wasi, "*.wasm", SearchOption.AllDirectories));
        }

        var (kib, ms) = MeasureCompile(corpus);
        Console.WriteLine(FormattableString.Invariant(
            $"wasm case=compile kib_per_ms={kib / ms:F2} kib={kib:F0} compile_ms={ms:F1} modules={corpus.Count}"));
        return ok ? 0 : 1;
    }

    private static (double Kib, double Ms) MeasureCompile(List<string> files)
    {
        using var engine = new WasmEngine(fuel: false, epochs: false);
        using (Module.FromBytes(engine.Engine, "warmup", File.ReadAllBytes(files[0])))
        {
        }

        double kib = 0, ms = 0;
        foreach (var file in files)
        {
            var bytes = File.ReadAllBytes(file);
            var best = double.MaxValue;
            for (var i = 0; i < 3; i++)
            {
                var clock = Stopwatch.StartNew();
                using (Module.FromBytes(engine.Engine, "corpus", bytes))
                {
                    best = Math.Min(best, clock.Elapsed.TotalMilliseconds);
                }
            }

            kib += bytes.Length / 1024.0;
            ms += best;
        }

        return (kib, ms);
    }

    private static (double BestMs, double FirstMs, uint Checksum) RunEngine(byte[] bytes, int iterations, WasmPool? pool)
    {
        using var engine = new WasmEngine(fuel: false, epochs: false, pool);
        using var store = new Store(engine.Engine);
        using var module = Module.FromBytes(engine.Engine, "kernel", bytes);
        using var linker = new Linker(engine.Engine);
        var run = linker.Instantiate(store, module).GetFunction<int>("run")!;
        var clock = new Stopwatch();
        var best = double.MaxValue;
        var first = 0.0;
        uint checksum = 0;
        for (var i = 0; i <= iterations; i++)
        {
            clock.Restart();
            checksum = (uint)run();
            var ms = clock.Elapsed.TotalMilliseconds;
            if (i == 0)
            {
                first = ms;
            }
            else
            {
                best = Math.Min(best, ms);
            }
        }

        return (best, first, checksum);
    }

    private static async Task<(double BestMs, uint Checksum)> RunNodeAsync(
        string directory, string file, int iterations, CancellationToken cancellationToken)
    {
        var psi = new ProcessStartInfo("node")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        psi.ArgumentList.Add("--no-liftoff");
        psi.ArgumentList.Add(Path.Combine(directory, "run-node.mjs"));
        psi.ArgumentList.Add(file);
        // run-node.mjs makes its own warm-up call before the ITERATIONS measured ones, as RunEngine does.
        psi.ArgumentList.Add(iterations.ToString(CultureInfo.InvariantCulture));
        using var process = Process.Start(psi) ?? throw new InvalidOperationException("node did not start");
        var error = process.StandardError.ReadToEndAsync(cancellationToken);
        var output = await process.StandardOutput.ReadToEndAsync(cancellationToken);
        await process.WaitForExitAsync(cancellationToken);
        if (process.ExitCode != 0)
        {
            throw new BenchFailedException(
                $"node run-node.mjs {Path.GetFileName(file)} exited {process.ExitCode}:\n{output}{await error}");
        }

        await error;
        using var json = JsonDocument.Parse(output);
        return (json.RootElement.GetProperty("best_ms").GetDouble(), json.RootElement.GetProperty("checksum").GetUInt32());
    }

    private static string FindKernels()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            var candidate = Path.Combine(dir.FullName, "bench", "wasm-kernels");
            if (Directory.Exists(candidate))
            {
                return candidate;
            }
        }

        throw new DirectoryNotFoundException("bench/wasm-kernels not found above " + AppContext.BaseDirectory);
    }
}
