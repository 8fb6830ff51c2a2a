using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using MQTTnet.Protocol;
using Propeller.Broker;

namespace Propeller.Bench.Manager;

/// <summary>
/// `manager`: the real manager (Kestrel, PostgreSQL, mosquitto) with M simulated proplets that answer every start at
/// once; N tasks are created and started over HTTP by concurrent clients, and each task's latency runs from its start
/// request to the Completed state visible through GET /tasks/{id} (long polling with ?wait). Options: --tasks N (4000),
/// --proplets M (3), --clients C (16), --warmup N (default: until the JIT has settled). With --pipelines the run is
/// made twice in one process, on our write side and on Wolverine's (ADR 0014), both on Marten's streams, and the
/// ratio Wolverine / ours is printed; with --durability twice on Wolverine's pipeline, in Solo and in Balanced mode
/// (ADR 0014), and the ratio Balanced / Solo.
/// </summary>
internal static class ManagerBenchmark
{
    public static async Task<int> RunAsync(string[] args, CancellationToken cancellationToken)
    {
        if (args.Contains("--durability"))
        {
            // Wolverine's durability modes side by side (ADR 0014): Solo is the reference for Balanced on one node.
            var solo = await MeasureAsync(args, new Dictionary<string, string> { ["MANAGER_PIPELINE"] = "wolverine", ["MANAGER_DURABILITY_MODE"] = "solo" }, cancellationToken);
            var balanced = await MeasureAsync(args, new Dictionary<string, string> { ["MANAGER_PIPELINE"] = "wolverine", ["MANAGER_DURABILITY_MODE"] = "balanced" }, cancellationToken);
            Console.WriteLine(FormattableString.Invariant(
                $"manager case=durability solo_tasks_per_s={solo.TasksPerSecond:F0} solo_p50_ms={solo.P50:F1} solo_p99_ms={solo.P99:F1} balanced_tasks_per_s={balanced.TasksPerSecond:F0} balanced_p50_ms={balanced.P50:F1} balanced_p99_ms={balanced.P99:F1} ratio={balanced.TasksPerSecond / solo.TasksPerSecond:F2}"));
            return 0;
        }

        if (!args.Contains("--pipelines"))
        {
            await MeasureAsync(args, null, cancellationToken);
            return 0;
        }

        var own = await MeasureAsync(args, new Dictionary<string, string> { ["MANAGER_PIPELINE"] = "own" }, cancellationToken);
        var wolverine = await MeasureAsync(args, new Dictionary<string, string> { ["MANAGER_PIPELINE"] = "wolverine" }, cancellationToken);
        Console.WriteLine(FormattableString.Invariant(
            $"manager case=pipelines own_tasks_per_s={own.TasksPerSecond:F0} own_p50_ms={own.P50:F1} own_p99_ms={own.P99:F1} wolverine_tasks_per_s={wolverine.TasksPerSecond:F0} wolverine_p50_ms={wolverine.P50:F1} wolverine_p99_ms={wolverine.P99:F1} ratio={wolverine.TasksPerSecond / own.TasksPerSecond:F2}"));
        return 0;
    }

    private static async Task<(double TasksPerSecond, double P50, double P99)> MeasureAsync(string[] args, IReadOnlyDictionary<string, string>? settings, CancellationToken cancellationToken)
    {
        var tasks = Option(args, "--tasks", 4000);
        var proplets = Option(args, "--proplets", 3);
        var clients = Option(args, "--clients", 16);
        await using var manager = await BenchManager.StartAsync("bench_manager", "bench", cancellationToken, settings);
        var app = manager.App;
        var http = manager.Http;
        var broker = manager.Broker;
        var baseTopic = manager.BaseTopic;

        var simulated = new List<BrokerConnection>();
        var ids = new List<string>();
        for (var i = 0; i < proplets; i++)
        {
            ids.Add(Guid.NewGuid().ToString());
            simulated.Add(await StartPropletAsync(broker, baseTopic, ids[^1], cancellationToken));
        }

        // Heartbeats every 5 s, like real proplets (every 10 s by default), so they stay alive however long the run.
        using var stopHeartbeats = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var heartbeats = Task.Run(async () =>
        {
            while (!stopHeartbeats.IsCancellationRequested)
            {
                await Task.Delay(TimeSpan.FromSeconds(5), stopHeartbeats.Token).ContinueWith(static _ => { }, TaskScheduler.Default);
                for (var i = 0; i < simulated.Count && !stopHeartbeats.IsCancellationRequested; i++)
                {
                    var alive = JsonSerializer.SerializeToUtf8Bytes(new { proplet_id = ids[i], status = "alive" });
                    await simulated[i].PublishAsync($"{baseTopic}/control/proplet/alive", alive, MqttQualityOfServiceLevel.AtLeastOnce, CancellationToken.None);
                }
            }
        }, CancellationToken.None);

        while ((await http.GetFromJsonAsync<JsonElement>("/proplets?status=active", cancellationToken)).GetProperty("total").GetInt32() < proplets)
        {
            await Task.Delay(20, cancellationToken);
        }

        // Warm-up outside the clock, until the JIT has settled (see WarmUpAsync).
        await WarmUpAsync(count => RunTasksAsync(http, count, clients, cancellationToken), Option(args, "--warmup", 0));
        // Where the time goes: a watcher on the broker sees each start message and each result go by.
        var seen = new ConcurrentDictionary<string, (long Start, long Result)>(StringComparer.Ordinal);
        await using var watcher = await BrokerWatcher.StartAsync(
            broker,
            baseTopic,
            "watch-" + manager.Tenant,
            (id, at) => seen.AddOrUpdate(id, _ => (at, 0), (_, v) => (at, v.Result)),
            (id, at) => seen.AddOrUpdate(id, _ => (0, at), (_, v) => (v.Start, at)),
            cancellationToken);
        var stages = new ConcurrentBag<(string Id, long Start, long Started, long Done)>();
        var busyBefore = MachineBusy();
        var stopwatch = Stopwatch.StartNew();
        var latencies = await RunTasksAsync(http, tasks, clients, cancellationToken, stages);
        stopwatch.Stop();
        var busyMs = MachineBusy() - busyBefore;
        latencies.Sort();
        var tasksPerSecond = tasks / stopwatch.Elapsed.TotalSeconds;

        // Reference, same run and database: the bare command path (load-free decide + append with the inline task view)
        // at the same concurrency. A task needs three such appends (create, start with its dispatch, result), so
        // appends/s ÷ 3 is the ceiling the event store alone allows; ratio = what the whole manager reaches of it.
        var appendsPerSecond = await ReferenceAppendsPerSecondAsync(app.Services, clients, Math.Max(400, tasks), cancellationToken);
        Console.WriteLine(FormattableString.Invariant(
            $"manager case=dispatch pipeline={settings?.GetValueOrDefault("MANAGER_PIPELINE") ?? "default"}{(settings?.GetValueOrDefault("MANAGER_DURABILITY_MODE") is { } mode ? " durability=" + mode : "")} tasks={tasks} proplets={proplets} clients={clients} tasks_per_s={tasksPerSecond:F0} p50_ms={Percentile(latencies, 0.50):F1} p99_ms={Percentile(latencies, 0.99):F1} reference_appends_per_s={appendsPerSecond:F0} ratio={tasksPerSecond / (appendsPerSecond / 3):F2}"));
        PrintStages(stages, seen);
        Console.WriteLine(FormattableString.Invariant($"manager case=cpu machine_busy_ms_per_task={busyMs / tasks:F2} cores={Environment.ProcessorCount}"));
        await stopHeartbeats.CancelAsync();
        await heartbeats;
        foreach (var client in simulated)
        {
            await client.DisposeAsync();
        }

        return (tasksPerSecond, Percentile(latencies, 0.50), Percentile(latencies, 0.99));
    }

    private static async Task<double> ReferenceAppendsPerSecondAsync(IServiceProvider services, int writers, int tasks, CancellationToken cancellationToken)
    {
        var commands = services.GetRequiredService<Propeller.Application.Aggregates.CommandHandler>();
        var now = DateTimeOffset.UtcNow;
        var next = -1;
        var stopwatch = Stopwatch.StartNew();
        await Task.WhenAll(Enumerable.Range(0, writers).Select(_ => Task.Run(async () =>
        {
            while (Interlocked.Increment(ref next) < tasks)
            {
                var id = new Propeller.Domain.Tasks.TaskId(Guid.CreateVersion7());
                var stream = Propeller.Application.Tasks.TaskAggregate.StreamId(id);
                var metadata = Propeller.Application.EventStore.EventMetadata.At(now);
                commands.Cache.Set(stream, Propeller.Domain.Tasks.TaskState.Initial, 0);
                await commands.HandleAsync(
                    Propeller.Application.Tasks.TaskAggregate.Decider, stream, new Propeller.Domain.Tasks.TaskCommand.CreateTask(id, Propeller.Domain.Tasks.TaskSpec.Named("reference"), now), metadata, cancellationToken);
            }
        }, cancellationToken)));
        return tasks / stopwatch.Elapsed.TotalSeconds;
    }

    /// <summary>
    /// Medians from the HTTP start: its response, the start message on the broker, the result on the broker, and the
    /// Completed state at the client (the last is the benchmark's latency).
    /// </summary>
    private static void PrintStages(IEnumerable<(string Id, long Start, long Started, long Done)> stages, ConcurrentDictionary<string, (long Start, long Result)> seen)
    {
        var rows = stages.Where(s => seen.TryGetValue(s.Id, out var v) && v.Start > 0 && v.Result > 0).Select(s => (s, v: seen[s.Id])).ToList();
        double Median(Func<((string Id, long Start, long Started, long Done) s, (long Start, long Result) v), long> to) =>
            Percentile([.. rows.Select(r => Stopwatch.GetElapsedTime(r.s.Start, to(r)).TotalMilliseconds).Order()], 0.5);
        Console.WriteLine(FormattableString.Invariant(
            $"manager case=stages tasks={rows.Count} start_response_ms={Median(r => r.s.Started):F1} start_message_ms={Median(r => r.v.Start):F1} result_message_ms={Median(r => r.v.Result):F1} completed_ms={Median(r => r.s.Done):F1}"));
    }

    private static async Task<List<double>> RunTasksAsync(
        HttpClient http, int count, int clients, CancellationToken cancellationToken, ConcurrentBag<(string Id, long Start, long Started, long Done)>? stages = null)
    {
        var latencies = new ConcurrentBag<double>();
        var next = -1;
        await Task.WhenAll(Enumerable.Range(0, clients).Select(_ => Task.Run(async () =>
        {
            while (Interlocked.Increment(ref next) < count)
            {
                var created = await http.PostAsync("/tasks", new StringContent("""{"name":"main","inputs":["1","2"]}""", Encoding.UTF8, "application/json"), cancellationToken);
                var id = (await created.Content.ReadFromJsonAsync<JsonElement>(cancellationToken)).GetProperty("id").GetString();
                var start = Stopwatch.GetTimestamp();
                (await http.PostAsync($"/tasks/{id}/start", null, cancellationToken)).EnsureSuccessStatusCode();
                var started = Stopwatch.GetTimestamp();
                // Long polling (GET /tasks/{id}?wait=...) rather than a tight poll loop that would load the manager.
                while ((await http.GetFromJsonAsync<JsonElement>($"/tasks/{id}?wait=10s", cancellationToken)).GetProperty("state").GetInt32() != 3)
                {
                }

                var done = Stopwatch.GetTimestamp();
                latencies.Add(Stopwatch.GetElapsedTime(start, done).TotalMilliseconds);
                stages?.Add((id!, start, started, done));
            }
        }, cancellationToken)));
        return [.. latencies];
    }

    /// <summary>A batch handler that hands each message to <paramref name="handle"/>, in order.</summary>
    internal static Func<IReadOnlyList<ReceivedMessage>, CancellationToken, ValueTask> EachMessage(Func<ReceivedMessage, CancellationToken, ValueTask> handle) =>
        async (messages, cancellationToken) =>
        {
            foreach (var message in messages)
            {
                await handle(message, cancellationToken);
            }
        };

    internal static async Task<BrokerConnection> StartPropletAsync(string broker, string baseTopic, string propletId, CancellationToken cancellationToken)
    {
        BrokerConnection? client = null;
        client = new BrokerConnection(new BrokerOptions { ClientId = propletId }.WithAddress(broker))
        {
            Handler = ManagerBenchmark.EachMessage(async (message, token) =>
            {
                var start = JsonDocument.Parse(message.Payload).RootElement;
                if (start.TryGetProperty("proplet_id", out var target) && target.GetString() != propletId)
                {
                    return;
                }

                var result = JsonSerializer.SerializeToUtf8Bytes(new { task_id = start.GetProperty("id").GetString(), proplet_id = propletId, results = "3", error = (string?)null });
                await client!.PublishAsync($"{baseTopic}/control/proplet/results", result, MqttQualityOfServiceLevel.AtLeastOnce, token);
            }),
        };
        await client.StartAsync(cancellationToken);
        await client.SubscribeAsync($"{baseTopic}/control/manager/start", MqttQualityOfServiceLevel.AtLeastOnce, cancellationToken);
        var alive = JsonSerializer.SerializeToUtf8Bytes(new { proplet_id = propletId, status = "alive" });
        await client.PublishAsync($"{baseTopic}/control/proplet/alive", alive, MqttQualityOfServiceLevel.AtLeastOnce, cancellationToken);
        return client;
    }

    /// <summary>
    /// Runs rounds of 500 tasks until a round compiles fewer than 20 methods (tiered compilation has moved the hot
    /// paths to their final, optimised code: a long-running manager's steady state) or 60 s have passed; with
    /// <paramref name="fixedCount"/> &gt; 0, exactly that many tasks instead. Measuring right after start-up would
    /// mostly measure the JIT: the same run is ~1.5× faster once it has settled.
    /// </summary>
    internal static async Task WarmUpAsync(Func<int, Task> run, int fixedCount)
    {
        if (fixedCount > 0)
        {
            await run(fixedCount);
            return;
        }

        var deadline = Stopwatch.StartNew();
        var rounds = 0;
        long compiled;
        do
        {
            compiled = System.Runtime.JitInfo.GetCompiledMethodCount();
            await run(500);
            rounds++;
        }
        while (System.Runtime.JitInfo.GetCompiledMethodCount() - compiled >= 20 && deadline.Elapsed < TimeSpan.FromSeconds(60));

        Console.Error.WriteLine(FormattableString.Invariant($"# warm-up: {rounds * 500} tasks in {deadline.Elapsed.TotalSeconds:F0} s"));
    }

    /// <summary>
    /// CPU time the whole machine spent busy so far, in ms (all processes: PostgreSQL, mosquitto, this one), from
    /// /proc/stat; 0 where there is none. Per task, it is steadier than throughput on a shared machine.
    /// </summary>
    internal static double MachineBusy()
    {
        if (!File.Exists("/proc/stat"))
        {
            return 0;
        }

        var fields = File.ReadLines("/proc/stat").First().Split(' ', StringSplitOptions.RemoveEmptyEntries).Skip(1).Select(long.Parse).ToArray();
        var idle = fields[3] + (fields.Length > 4 ? fields[4] : 0);
        return (fields.Sum() - idle) * 1000.0 / 100; // USER_HZ = 100
    }

    internal static double Percentile(List<double> sorted, double p) => sorted.Count == 0 ? 0 : sorted[Math.Min(sorted.Count - 1, (int)Math.Ceiling(p * sorted.Count) - 1)];

    internal static int Option(string[] args, string name, int fallback)
    {
        var index = Array.IndexOf(args, name);
        return index >= 0 && index + 1 < args.Length && int.TryParse(args[index + 1], NumberStyles.None, CultureInfo.InvariantCulture, out var value) ? value : fallback;
    }
}
