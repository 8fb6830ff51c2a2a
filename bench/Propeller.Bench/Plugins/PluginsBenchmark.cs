using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Microsoft.Extensions.Logging.Abstractions;
using Propeller.Application.Plugins;
using Propeller.Bench.Support;
using Propeller.Plugins.Abi;
using Propeller.Plugins.Hosting;
using Propeller.Plugins.Runtime;

namespace Propeller.Bench.Plugins;

/// <summary>
/// `plugins`: the added latency of a chain of three authorize plugins (examples/plugins/plugin-auth built with clang,
/// three copies, each with its own instance pool) per command, against the allow-all gate, sequential calls after a
/// warm-up. The reference is the same three checks written in C# over the same JSON (serialise, parse, decide), so
/// ratio = wasm overhead / native overhead. Prints `plugins case=chain3 overhead_us=&lt;p50&gt; ...`.
/// Options: --iterations N (default 20000).
/// </summary>
internal static class PluginsBenchmark
{
    public static async Task<int> RunAsync(string[] args, CancellationToken cancellationToken)
    {
        BenchArgs.Known(args, ["--iterations"]);
        var iterations = BenchArgs.Int(args, "--iterations", 20_000);

        var dir = Directory.CreateTempSubdirectory("plugins-bench");
        try
        {
            var wasm = Path.Combine(dir.FullName, "auth.wasm");
            Compile(FindExample("plugin-auth"), wasm);
            foreach (var name in (string[])["1-auth", "2-auth", "3-auth"])
            {
                File.Copy(wasm, Path.Combine(dir.FullName, name + ".wasm"));
            }

            File.Delete(wasm);
            using var metrics = new PluginMetrics();
            using var catalog = new PluginCatalog(new PluginHostOptions { Directory = dir.FullName }, NullLogger<PluginCatalog>.Instance, metrics);
            catalog.Reload(cancellationToken);
            await using var gate = new WasmPluginGate(catalog, NullLogger<WasmPluginGate>.Instance);
            var context = new PluginAuthContext("alice", PluginAction.Start);
            var task = new PluginTaskInfo
            {
                Id = "0195f2a4-7c2e-7d1a-9c1e-2b7f0a1c9e11",
                Name = "add",
                ImageUrl = "docker.io/library/add:1",
                CliArgs = ["--invoke", "add"],
                Inputs = ["1", "2"],
                Env = new Dictionary<string, string> { ["PROPELLER_CREATED_BY"] = "alice", ["MODE"] = "fast" },
                Priority = 50,
            };

            var allowAll = await MeasureAsync(AllowAllPluginGate.Instance, context, task, iterations, cancellationToken);
            var chain = await MeasureAsync(gate, context, task, iterations, cancellationToken);
            var native = await MeasureAsync(new NativeAuthGate(3), context, task, iterations, cancellationToken);
            var overhead = chain.P50 - allowAll.P50;
            var nativeOverhead = Math.Max(native.P50 - allowAll.P50, 0.001);
            Console.WriteLine(FormattableString.Invariant(
                $"plugins case=chain3 overhead_us={overhead:F1} p99_us={chain.P99 - allowAll.P50:F1} native_us={nativeOverhead:F1} ratio={overhead / nativeOverhead:F1} target_us=200 iterations={iterations}"));
            var single = catalog.Current.Active[0];
            var request = PluginJson.ContextAndTask(context, task, withAction: true);
            var perCall = await MeasureCallAsync(single, request, iterations, cancellationToken);
            Console.WriteLine(FormattableString.Invariant($"plugins case=call hook=authorize p50_us={perCall.P50:F1} p99_us={perCall.P99:F1}"));
            return overhead <= 200 ? 0 : 1;
        }
        finally
        {
            dir.Delete(true);
        }
    }

    private static async Task<(double P50, double P99)> MeasureAsync(IPluginGate gate, PluginAuthContext context, PluginTaskInfo task, int iterations, CancellationToken cancellationToken)
    {
        for (var i = 0; i < Math.Min(iterations, 2000); i++)
        {
            var warm = await gate.AuthorizeAsync(context, task, cancellationToken);
            if (!warm.Allowed)
            {
                throw new InvalidOperationException("the benchmark chain denied: " + warm.Reason);
            }
        }

        var samples = new double[iterations];
        for (var i = 0; i < iterations; i++)
        {
            var started = Stopwatch.GetTimestamp();
            await gate.AuthorizeAsync(context, task, cancellationToken);
            samples[i] = Stopwatch.GetElapsedTime(started).TotalMicroseconds;
        }

        return Percentiles(samples);
    }

    private static async Task<(double P50, double P99)> MeasureCallAsync(LoadedPlugin plugin, byte[] request, int iterations, CancellationToken cancellationToken)
    {
        var samples = new double[iterations];
        for (var i = 0; i < iterations; i++)
        {
            var started = Stopwatch.GetTimestamp();
            await plugin.CallAsync(PluginHookNames.Authorize, request, true, cancellationToken);
            samples[i] = Stopwatch.GetElapsedTime(started).TotalMicroseconds;
        }

        return Percentiles(samples);
    }

    private static (double P50, double P99) Percentiles(double[] samples)
    {
        Array.Sort(samples);
        return (samples[samples.Length / 2], samples[Math.Min(samples.Length - 1, (int)(samples.Length * 0.99))]);
    }

    private static void Compile(string source, string output)
    {
        var psi = new ProcessStartInfo("clang") { RedirectStandardError = true, UseShellExecute = false };
        foreach (var arg in (string[])["--target=wasm32-wasi", "-O2", "-nostartfiles", "-Wl,--no-entry", "-Wl,--export-dynamic", "-o", output, source])
        {
            psi.ArgumentList.Add(arg);
        }

        using var process = Process.Start(psi) ?? throw new InvalidOperationException("clang did not start (scripts/tools.sh installs it)");
        var error = process.StandardError.ReadToEnd();
        process.WaitForExit();
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException("clang failed: " + error);
        }
    }

    private static string FindExample(string name)
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            var candidate = Path.Combine(dir.FullName, "examples", "plugins", name, name + ".c");
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }

        throw new FileNotFoundException($"examples/plugins/{name}/{name}.c not found above {AppContext.BaseDirectory}");
    }

    /// <summary>The reference: plugin-auth's checks in C#, over the same request JSON, <c>plugins</c> times.</summary>
    private sealed class NativeAuthGate(int plugins) : IPluginGate
    {
        public ValueTask<GateOutcome> AuthorizeAsync(PluginAuthContext context, PluginTaskInfo task, CancellationToken cancellationToken)
        {
            var decisions = new List<PluginDecision>(plugins);
            for (var p = 0; p < plugins; p++)
            {
                var started = Stopwatch.GetTimestamp();
                using var request = JsonDocument.Parse(PluginJson.ContextAndTask(context, task, withAction: true));
                var ctx = request.RootElement.GetProperty("context");
                var t = request.RootElement.GetProperty("task");
                var user = ctx.TryGetProperty("user_id", out var u) ? u.GetString() : null;
                var action = ctx.GetProperty("action").GetString();
                string? reason = null;
                if (string.IsNullOrEmpty(t.GetProperty("name").GetString()))
                {
                    reason = "task name must not be empty";
                }
                else if (action is "create" or "start" && string.IsNullOrEmpty(user))
                {
                    reason = "user_id is required for " + action;
                }
                else if (action == "start" && user != "system" && t.TryGetProperty("env", out var env)
                         && env.TryGetProperty("PROPELLER_CREATED_BY", out var owner) && owner.GetString() != user)
                {
                    reason = "only the creator of the task may start it";
                }

                var answer = PluginJson.Write(w =>
                {
                    w.WriteStartObject();
                    w.WriteBoolean("allow", reason is null);
                    w.WriteEndObject();
                });
                using var parsed = JsonDocument.Parse(answer);
                decisions.Add(new PluginDecision("native", "authorize", parsed.RootElement.GetProperty("allow").GetBoolean(), reason, Stopwatch.GetElapsedTime(started)));
                if (reason is not null)
                {
                    return ValueTask.FromResult(new GateOutcome(false, reason, decisions));
                }
            }

            return ValueTask.FromResult(new GateOutcome(true, null, decisions));
        }

        public ValueTask<EnrichOutcome> EnrichAsync(PluginAuthContext context, PluginTaskInfo task, CancellationToken cancellationToken) => ValueTask.FromResult(EnrichOutcome.None);

        public ValueTask<SelectOutcome> BeforePropletSelectAsync(PluginAuthContext context, PluginTaskInfo task, CancellationToken cancellationToken) => ValueTask.FromResult(SelectOutcome.Allow);

        public ValueTask<DispatchOutcome> BeforeDispatchAsync(PluginAuthContext context, PluginTaskInfo task, PluginPropletInfo proplet, CancellationToken cancellationToken) =>
            ValueTask.FromResult(DispatchOutcome.Allow);

        public void OnTaskStarted(PluginTaskInfo task)
        {
        }

        public void OnTaskCompleted(PluginTaskInfo task, bool success, string? error)
        {
        }
    }
}
