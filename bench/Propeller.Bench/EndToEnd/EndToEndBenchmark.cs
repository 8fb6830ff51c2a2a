using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Propeller.Bench.Manager;
using Propeller.Bench.Support;
using MQTTnet.Protocol;
using Propeller.Broker;

namespace Propeller.Bench.EndToEnd;

/// <summary>
/// `e2e`: the real manager (Kestrel, PostgreSQL, mosquitto) with K real proplets, each a separate
/// `propeller-proplet` process running the addition module on Wasmtime. C concurrent HTTP clients create and
/// start N addition tasks; each task's latency runs from its `POST /tasks/{id}/start` to Completed visible through
/// `GET /tasks/{id}?wait=10s`. The reference is the same run against K simulated proplets that answer every start at once
/// (the manager benchmark's), so ratio = real / simulated throughput: the share of the manager's own ceiling the
/// proplets reach. A watcher on the broker also times each task's proplet hop (start message seen → result seen),
/// which separates the proplets' share of the latency from the manager's, and `case=proplets-direct` drives the same
/// K proplet processes without the manager: C starts in flight published straight to the broker (round robin over the
/// proplets), latency from publish to result received. Options: --tasks N (3000), --proplets K (4), --clients C (8),
/// --warmup N (default: until the JIT has settled).
/// </summary>
internal static class EndToEndBenchmark
{
    private static readonly string[] AdditionInputs = ["10", "32"];

    private const string AdditionBody =
        """{"name":"main","file":"AGFzbQEAAAABBwFgAn9/AX8DAgEABwgBBG1haW4AAAoJAQcAIAAgAWoL","inputs":[10,32]}""";

    public static async Task<int> RunAsync(string[] args, CancellationToken cancellationToken)
    {
        BenchArgs.Known(args, ["--tasks", "--proplets", "--clients", "--warmup"]);
        var tasks = ManagerBenchmark.Option(args, "--tasks", 3000);
        var proplets = ManagerBenchmark.Option(args, "--proplets", 4);
        var clients = ManagerBenchmark.Option(args, "--clients", 8);
        var proplet = PropletDll();
        await using var manager = await BenchManager.StartAsync("bench_e2e", "e2e", cancellationToken);
        var http = manager.Http;
        var broker = manager.Broker;
        var baseTopic = manager.BaseTopic;
        var tenant = manager.Tenant;

        // The watcher: when each start and each result crossed the broker.
        var starts = new ConcurrentDictionary<string, long>(StringComparer.Ordinal);
        var hops = new ConcurrentBag<double>();
        var direct = new ConcurrentDictionary<string, TaskCompletionSource>(StringComparer.Ordinal);
        // The first error result seen: a proplet that fails every task answers at once, so its errors timed as results
        // would print a fast hop and a fast direct rate. Either case fails the run on it instead.
        string? failedResult = null;
        await using var watcher = await BrokerWatcher.StartAsync(
            broker,
            baseTopic,
            "watch-" + tenant,
            (id, at) => starts.TryAdd(id, at),
            (id, at, error) =>
            {
                if (error is not null)
                {
                    Interlocked.CompareExchange(ref failedResult, $"the proplet's result for task {id} is an error: {error}", null);
                    starts.TryRemove(id, out _);
                    if (direct.TryRemove(id, out var failed))
                    {
                        failed.TrySetException(new BenchFailedException($"the proplet's result for direct start {id} is an error: {error}"));
                    }

                    return;
                }

                if (starts.TryRemove(id, out var started))
                {
                    hops.Add(Stopwatch.GetElapsedTime(started, at).TotalMilliseconds);
                }

                if (direct.TryRemove(id, out var waiter))
                {
                    waiter.TrySetResult();
                }
            },
            cancellationToken);

        // Real proplets: separate processes.
        var processes = new List<Process>();
        var propletIds = new List<string>();
        try
        {
            for (var i = 0; i < proplets; i++)
            {
                var propletId = Guid.NewGuid().ToString();
                propletIds.Add(propletId);
                processes.Add(StartProplet(proplet, broker, tenant, propletId));
            }

            await WaitActiveAsync(http, $"at least {proplets}", n => n >= proplets, cancellationToken);
            // Warm-up outside the clock, until the JIT has settled in this process (the proplets warm up alongside).
            await ManagerBenchmark.WarmUpAsync(count => RunTasksAsync(http, count, clients, cancellationToken), ManagerBenchmark.Option(args, "--warmup", 0, min: 0));
            hops.Clear();
            double PropletsMs() => processes.Sum(p => ProcCpu.Ms(p.Id));
            var (selfBefore, propletsBefore, postgresBefore, brokerBefore) = (ProcCpu.Ms(Environment.ProcessId), PropletsMs(), ProcCpu.ByName("postgres"), ProcCpu.ByName("mosquitto"));
            var jitBefore = JitWork.Now();
            var gcBefore = GcWork.Now();
            var batches = CommandBatches.Listen();
            var real = await MeasureAsync(http, tasks, clients, cancellationToken);
            batches.Dispose();
            if (Volatile.Read(ref failedResult) is { } failure)
            {
                throw new BenchFailedException(failure);
            }

            var cpu = (
                Self: ProcCpu.Ms(Environment.ProcessId) - selfBefore,
                Proplets: PropletsMs() - propletsBefore,
                Postgres: ProcCpu.Since(postgresBefore, ProcCpu.ByName("postgres")),
                Broker: ProcCpu.Since(brokerBefore, ProcCpu.ByName("mosquitto")));
            var jit = JitWork.Now() - jitBefore;
            var gc = GcWork.Now() - gcBefore;
            var hop = hops.ToList();
            hop.Sort();

            // The same proplets without the manager.
            await DirectAsync(watcher, baseTopic, propletIds, processes, direct, Math.Min(200, tasks), clients, cancellationToken); // warm-up
            var propletsDirect = await DirectAsync(watcher, baseTopic, propletIds, processes, direct, tasks, clients, cancellationToken);

            foreach (var process in processes)
            {
                process.Kill(entireProcessTree: true);
                await process.WaitForExitAsync(cancellationToken);
            }

            await WaitActiveAsync(http, "none", n => n == 0, cancellationToken); // their Last Wills took them offline

            // Reference: simulated proplets that answer at once, same manager, same task stream.
            var simulated = new List<BrokerConnection>();
            for (var i = 0; i < proplets; i++)
            {
                simulated.Add(await ManagerBenchmark.StartPropletAsync(broker, baseTopic, Guid.NewGuid().ToString(), cancellationToken));
            }

            await WaitActiveAsync(http, $"at least {proplets}", n => n >= proplets, cancellationToken);
            await RunTasksAsync(http, Math.Min(50, tasks), clients, cancellationToken);
            var reference = await MeasureAsync(http, tasks, clients, cancellationToken);
            foreach (var client in simulated)
            {
                await client.DisposeAsync();
            }

            Console.WriteLine(FormattableString.Invariant(
                $"e2e case=reference-simulated tasks={tasks} proplets={proplets} clients={clients} tasks_per_s={reference.PerSecond:F0} p50_ms={reference.P50:F1} p99_ms={reference.P99:F1}"));
            Console.WriteLine(FormattableString.Invariant(
                $"e2e case=proplets-direct tasks={tasks} proplets={proplets} in_flight={clients} tasks_per_s={propletsDirect.PerSecond:F0} p50_ms={propletsDirect.P50:F1} p99_ms={propletsDirect.P99:F1}"));
            Console.WriteLine(FormattableString.Invariant(
                $"e2e case=proplet-hop tasks={hop.Count} p50_ms={ManagerBenchmark.Percentile(hop, 0.50):F1} p99_ms={ManagerBenchmark.Percentile(hop, 0.99):F1}"));
            Console.WriteLine(FormattableString.Invariant(
                $"e2e case=addition tasks={tasks} proplets={proplets} clients={clients} tasks_per_s={real.PerSecond:F0} p50_ms={real.P50:F1} p99_ms={real.P99:F1} ratio={real.PerSecond / reference.PerSecond:F2}"));
            Console.WriteLine(FormattableString.Invariant(
                $"e2e case=cpu stack_ms_per_task={(cpu.Self + cpu.Proplets + cpu.Postgres + cpu.Broker) / tasks:F2} manager_process_ms_per_task={cpu.Self / tasks:F2} proplets_ms_per_task={cpu.Proplets / tasks:F2} postgres_ms_per_task={cpu.Postgres / tasks:F2} broker_ms_per_task={cpu.Broker / tasks:F2} {jit.Format("manager_")} {batches} {gc.PerUnit(tasks)}"));
        }
        finally
        {
            foreach (var process in processes)
            {
                if (!process.HasExited)
                {
                    process.Kill(entireProcessTree: true);
                }

                process.Dispose();
            }
        }

        return 0;
    }

    private static async Task<(double PerSecond, double P50, double P99)> MeasureAsync(HttpClient http, int tasks, int clients, CancellationToken cancellationToken)
    {
        var stopwatch = Stopwatch.StartNew();
        var latencies = await RunTasksAsync(http, tasks, clients, cancellationToken);
        stopwatch.Stop();
        latencies.Sort();
        return (tasks / stopwatch.Elapsed.TotalSeconds, ManagerBenchmark.Percentile(latencies, 0.50), ManagerBenchmark.Percentile(latencies, 0.99));
    }

    /// <summary>Publishes <paramref name="count"/> addition starts straight to the proplets (round robin, at most
    /// <paramref name="inFlight"/> outstanding) and times each until its result is seen; an error result (the watcher
    /// fails its waiter) or none within 60 s fails the run.</summary>
    private static async Task<(double PerSecond, double P50, double P99)> DirectAsync(
        BrokerConnection client,
        string baseTopic,
        List<string> propletIds,
        List<Process> processes,
        ConcurrentDictionary<string, TaskCompletionSource> waiters,
        int count,
        int inFlight,
        CancellationToken cancellationToken)
    {
        var latencies = new ConcurrentBag<double>();
        var next = -1;
        var stopwatch = Stopwatch.StartNew();
        await Task.WhenAll(Enumerable.Range(0, inFlight).Select(_ => Task.Run(async () =>
        {
            int i;
            while ((i = Interlocked.Increment(ref next)) < count)
            {
                var id = Guid.NewGuid().ToString();
                var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                waiters[id] = done;
                var start = JsonSerializer.SerializeToUtf8Bytes(new
                {
                    id,
                    name = "main",
                    file = "AGFzbQEAAAABBwFgAn9/AX8DAgEABwgBBG1haW4AAAoJAQcAIAAgAWoL",
                    inputs = AdditionInputs,
                    proplet_id = propletIds[i % propletIds.Count],
                });
                var began = Stopwatch.GetTimestamp();
                await client.PublishAsync($"{baseTopic}/control/manager/start", start, MqttQualityOfServiceLevel.AtLeastOnce, retain: false, orderKey: null, cancellationToken);
                try
                {
                    await done.Task.WaitAsync(TimeSpan.FromSeconds(60), cancellationToken);
                }
                catch (TimeoutException)
                {
                    waiters.TryRemove(id, out var _);
                    var exited = processes.Select((p, k) => (p, k)).Where(x => x.p.HasExited).Select(x => $"{propletIds[x.k]} (exit code {x.p.ExitCode})").ToList();
                    throw new BenchFailedException(
                        $"no result for direct start {id} (proplet {propletIds[i % propletIds.Count]}) within 60 s; proplets exited: {(exited.Count > 0 ? string.Join(", ", exited) : "none")}");
                }

                latencies.Add(Stopwatch.GetElapsedTime(began).TotalMilliseconds);
            }
        }, cancellationToken)));
        stopwatch.Stop();
        var sorted = latencies.ToList();
        sorted.Sort();
        return (count / stopwatch.Elapsed.TotalSeconds, ManagerBenchmark.Percentile(sorted, 0.50), ManagerBenchmark.Percentile(sorted, 0.99));
    }

    private static async Task<List<double>> RunTasksAsync(HttpClient http, int count, int clients, CancellationToken cancellationToken)
    {
        var latencies = new ConcurrentBag<double>();
        var next = -1;
        await Task.WhenAll(Enumerable.Range(0, clients).Select(_ => Task.Run(async () =>
        {
            while (Interlocked.Increment(ref next) < count)
            {
                var id = await ManagerBenchmark.CreateTaskAsync(http, AdditionBody, cancellationToken);
                var start = Stopwatch.GetTimestamp();
                await ManagerBenchmark.StartTaskAsync(http, id, cancellationToken);
                await ManagerBenchmark.WaitCompletedAsync(http, id, cancellationToken);
                latencies.Add(Stopwatch.GetElapsedTime(start).TotalMilliseconds);
            }
        }, cancellationToken)));
        return [.. latencies];
    }

    private static async Task WaitActiveAsync(HttpClient http, string expected, Func<int, bool> done, CancellationToken cancellationToken)
    {
        var deadline = Stopwatch.GetTimestamp();
        int active;
        while (!done(active = await ManagerBenchmark.GetTotalAsync(http, "/proplets?status=active", cancellationToken)))
        {
            if (Stopwatch.GetElapsedTime(deadline) > TimeSpan.FromSeconds(120))
            {
                throw new BenchFailedException($"proplets did not reach the expected liveness within 120 s ({active} active, wanted {expected})");
            }

            await Task.Delay(50, cancellationToken);
        }
    }

    /// <summary>
    /// A proplet process; with <paramref name="stderr"/>, what it writes on stderr is kept there (lock it to read) so that a
    /// failure can show it, else it goes to this process's stderr.
    /// </summary>
    internal static Process StartProplet(
        string dll, string broker, string tenant, string propletId, IReadOnlyDictionary<string, string>? environment = null, StringBuilder? stderr = null)
    {
        var info = new ProcessStartInfo("dotnet") { UseShellExecute = false, RedirectStandardOutput = false, RedirectStandardError = stderr is not null };
        info.ArgumentList.Add(dll);
        info.Environment["PROPLET_MQTT_ADDRESS"] = broker;
        info.Environment["PROPLET_TENANT_ID"] = tenant;
        info.Environment["PROPLET_CHANNEL_ID"] = "bench";
        info.Environment["PROPLET_ENTITY_ID"] = propletId;
        info.Environment["PROPLET_API_KEY"] = "bench";
        info.Environment["PROPLET_MQTT_QOS"] = "1";
        info.Environment["PROPLET_MQTT_KEEP_ALIVE"] = "2";
        info.Environment["PROPLET_LIVELINESS_INTERVAL"] = "2";
        info.Environment["PROPLET_METRICS_INTERVAL"] = "0";
        info.Environment["PROPLET_METRICS_ENABLED"] = "false";
        info.Environment["PROPLET_LOG_LEVEL"] = "warn";
        foreach (var (name, value) in environment ?? new Dictionary<string, string>())
        {
            info.Environment[name] = value;
        }

        var process = Process.Start(info) ?? throw new InvalidOperationException("could not start " + dll);
        if (stderr is not null)
        {
            process.ErrorDataReceived += (_, e) =>
            {
                lock (stderr)
                {
                    stderr.AppendLine(e.Data);
                }
            };
            process.BeginErrorReadLine();
        }

        return process;
    }

    /// <summary>propeller-proplet.dll built in the same configuration as this benchmark.</summary>
    internal static string PropletDll() => HostDll("Edge", "propeller-proplet.dll");

    /// <summary>A host's dll (src/<paramref name="project"/>) built in the same configuration as this benchmark.</summary>
    internal static string HostDll(string project, string dll)
    {
        var here = AppContext.BaseDirectory;
        var configuration = here.Contains($"{Path.DirectorySeparatorChar}Debug{Path.DirectorySeparatorChar}", StringComparison.Ordinal) ? "Debug" : "Release";
        var dir = new DirectoryInfo(here);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Propeller.sln")))
        {
            dir = dir.Parent;
        }

        var path = Path.Combine(dir?.FullName ?? here, "src", project, "bin", configuration, "net10.0", dll);
        return File.Exists(path) ? path : throw new FileNotFoundException($"{path} is not built (dotnet build -c {configuration} src/{project})", path);
    }
}
