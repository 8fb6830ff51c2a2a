using System.Diagnostics;
using System.Globalization;
using System.Text;
using Propeller.Bench.EndToEnd;
using Propeller.Bench.Manager;
using Propeller.Bench.Support;
using Propeller.Cli;

namespace Propeller.Bench.Ui;

/// <summary>
/// `cli`: `propeller task run add.wasm --inputs 10,32` (a process: `dotnet propeller.dll`) against the reference, curl
/// doing the same three calls from bash (POST /tasks, POST /tasks/{id}/start, GET /tasks/{id}?wait=30s), in the same
/// run against one manager (in this process) and one real proplet; alternating, N times each. `case=cli-in-process`
/// runs the same command through CliApp without starting a process (what the CLI costs beyond .NET's start-up).
/// `--r2r DIR` adds `case=cli-process-r2r`: DIR/propeller.dll from `dotnet publish src/Cli -c Release -r linux-x64
/// --self-contained false -p:PublishReadyToRun=true -o DIR` (precompiled: less JIT at start-up).
/// Options: --runs N (20), --r2r DIR.
/// </summary>
internal static class CliBenchmark
{
    private const string Addition = "AGFzbQEAAAABBwFgAn9/AX8DAgEABwgBBG1haW4AAAoJAQcAIAAgAWoL";

    public static async Task<int> RunAsync(string[] args, CancellationToken cancellationToken)
    {
        BenchArgs.Known(args, ["--runs", "--r2r"]);
        var runs = ManagerBenchmark.Option(args, "--runs", 20);
        var r2r = BenchArgs.Value(args, "--r2r") is { } r2rDir ? Path.Combine(r2rDir, "propeller.dll") : null;
        await using var manager = await BenchManager.StartAsync("bench_cli", "cli", cancellationToken);
        var url = manager.Http.BaseAddress!.ToString().TrimEnd('/');
        var dir = Directory.CreateTempSubdirectory("bench-cli");
        Process? proplet = null;
        try
        {
            var stderr = new StringBuilder();
            proplet = EndToEndBenchmark.StartProplet(EndToEndBenchmark.PropletDll(), manager.Broker, manager.Tenant, Guid.NewGuid().ToString(), stderr: stderr);
            var wasm = Path.Combine(dir.FullName, "add.wasm");
            await File.WriteAllBytesAsync(wasm, Convert.FromBase64String(Addition), cancellationToken);
            var script = Path.Combine(dir.FullName, "curl.sh");
            await File.WriteAllTextAsync(script, $$"""
                set -e
                id=$(curl -fsS -X POST "$URL/tasks" -H 'content-type: application/json' -d '{"name":"main","file":"{{Addition}}","inputs":[10,32]}' | grep -o '"id":"[^"]*"' | cut -d'"' -f4)
                curl -fsS -X POST "$URL/tasks/$id/start" >/dev/null
                curl -fsS "$URL/tasks/$id?wait=30s" | grep -o '"results":"[^"]*"' | cut -d'"' -f4
                """, cancellationToken);
            var cli = Path.Combine(AppContext.BaseDirectory, "propeller.dll");
            await manager.WaitPropletsActiveAsync(1, proplet, stderr, cancellationToken);

            // Warm-up: the manager's and the proplet's JIT, outside the clock.
            for (var i = 0; i < 3; i++)
            {
                await TimeAsync("bash", [script], url, cancellationToken);
                await TimeAsync("dotnet", [cli, "task", "run", wasm, "--inputs", "10,32"], url, cancellationToken);
            }

            var curl = new List<double>();
            var process = new List<double>();
            var inProcess = new List<double>();
            var precompiled = new List<double>();
            for (var i = 0; i < runs; i++)
            {
                curl.Add(await TimeAsync("bash", [script], url, cancellationToken));
                process.Add(await TimeAsync("dotnet", [cli, "task", "run", wasm, "--inputs", "10,32"], url, cancellationToken));
                inProcess.Add(await TimeInProcessAsync(url, wasm, cancellationToken));
                if (r2r is not null)
                {
                    precompiled.Add(await TimeAsync("dotnet", [r2r, "task", "run", wasm, "--inputs", "10,32"], url, cancellationToken));
                }
            }

            curl.Sort();
            var reference = ManagerBenchmark.Percentile(curl, 0.5);
            Report("curl-3-calls", curl, reference);
            Report("cli-process", process, reference);
            Report("cli-in-process", inProcess, reference);
            if (r2r is not null)
            {
                Report("cli-process-r2r", precompiled, reference);
            }
            Console.WriteLine($"cli load={File.ReadAllText("/proc/loadavg").Split(' ')[0]} cores={Environment.ProcessorCount}");
            return 0;
        }
        finally
        {
            ChildProcess.Stop(proplet);
            dir.Delete(recursive: true);
        }
    }

    private static void Report(string name, List<double> times, double reference)
    {
        var sorted = times.Order().ToList();
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"cli case={name} runs={sorted.Count} p50_ms={ManagerBenchmark.Percentile(sorted, 0.5):F1} p95_ms={ManagerBenchmark.Percentile(sorted, 0.95):F1} ratio_vs_curl={ManagerBenchmark.Percentile(sorted, 0.5) / reference:F2}"));
    }

    private static async Task<double> TimeAsync(string program, string[] args, string url, CancellationToken cancellationToken)
    {
        var info = new ProcessStartInfo(program) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }

        info.Environment["URL"] = url;
        info.Environment["PROPELLER_URL"] = url;
        var clock = Stopwatch.StartNew();
        using var process = Process.Start(info) ?? throw new InvalidOperationException("could not start " + program);
        var output = process.StandardOutput.ReadToEndAsync(cancellationToken);
        var error = process.StandardError.ReadToEndAsync(cancellationToken);
        await process.WaitForExitAsync(cancellationToken);
        var elapsed = clock.Elapsed.TotalMilliseconds;
        if (process.ExitCode != 0 || (await output).Trim() != "42")
        {
            throw new InvalidOperationException($"{program} {string.Join(' ', args)} exited {process.ExitCode}: {await output} {await error}");
        }

        return elapsed;
    }

    private static async Task<double> TimeInProcessAsync(string url, string wasm, CancellationToken cancellationToken)
    {
        using var output = new StringWriter();
        using var error = new StringWriter();
        var clock = Stopwatch.StartNew();
        var exit = await CliApp.RunAsync(["--url", url, "task", "run", wasm, "--inputs", "10,32"], new CliHost(output, error, _ => null), cancellationToken);
        var elapsed = clock.Elapsed.TotalMilliseconds;
        return exit == 0 && output.ToString().Trim() == "42" ? elapsed : throw new InvalidOperationException($"in-process run exited {exit}: {output} {error}");
    }
}
