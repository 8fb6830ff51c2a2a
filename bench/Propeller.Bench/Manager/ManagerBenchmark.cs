using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using MQTTnet.Protocol;
using Propeller.Bench.Support;
using Propeller.Broker;

namespace Propeller.Bench.Manager;

/// <summary>
/// `manager`: the real manager (Kestrel, PostgreSQL, mosquitto) with M simulated proplets that answer every start at
/// once; N tasks are created and started over HTTP by concurrent clients, and each task's latency runs from its start
/// request to the Completed state visible through GET /tasks/{id} (long polling with ?wait). Options: --tasks N (4000),
/// --proplets M (3), --clients C (16), --warmup N (default: until the JIT has settled), --module-kib K (each task
/// created with an inline module of K KiB, base64 in its `file`; default none). Reference in the same run and
/// database: Marten alone appending a task's create (decide, append, inline view, commit) at the same concurrency.
/// The cpu line adds what PostgreSQL did per task in the window (commits, rows inserted, updated, deleted: counts the
/// machine's speed does not move, see PgWork). With --durability the run is made twice in one process, in Wolverine's Solo and Balanced modes (ADR 0014), and the
/// ratio Balanced / Solo is printed.
/// </summary>
internal static class ManagerBenchmark
{
    /// <summary>A task's create request without a module.</summary>
    private const string DefaultBody = """{"name":"main","inputs":["1","2"]}""";

    public static async Task<int> RunAsync(string[] args, CancellationToken cancellationToken)
    {
        BenchArgs.Known(args, ["--tasks", "--proplets", "--clients", "--warmup", "--module-kib"], ["--durability", "--waiting"]);
        // The waiting case creates its tasks before any proplet is there: nothing to warm up, and no module option.
        BenchArgs.NotWith(args, "--durability", "--waiting");
        BenchArgs.NotWith(args, "--waiting", "--warmup", "--module-kib");
        if (args.Contains("--durability"))
        {
            // Wolverine's durability modes side by side (ADR 0014): Solo is the reference for Balanced on one node.
            var solo = await MeasureAsync(args, new Dictionary<string, string> { ["MANAGER_DURABILITY_MODE"] = "solo" }, cancellationToken);
            var balanced = await MeasureAsync(args, new Dictionary<string, string> { ["MANAGER_DURABILITY_MODE"] = "balanced" }, cancellationToken);
            Console.WriteLine(FormattableString.Invariant(
                $"manager case=durability solo_tasks_per_s={solo.TasksPerSecond:F0} solo_p50_ms={solo.P50:F1} solo_p99_ms={solo.P99:F1} balanced_tasks_per_s={balanced.TasksPerSecond:F0} balanced_p50_ms={balanced.P50:F1} balanced_p99_ms={balanced.P99:F1} ratio={balanced.TasksPerSecond / solo.TasksPerSecond:F2}"));
            return 0;
        }

        if (args.Contains("--waiting"))
        {
            await MeasureWaitingAsync(args, cancellationToken);
            return 0;
        }

        await MeasureAsync(args, null, cancellationToken);
        return 0;
    }

    private static async Task<(double TasksPerSecond, double P50, double P99)> MeasureAsync(string[] args, IReadOnlyDictionary<string, string>? settings, CancellationToken cancellationToken)
    {
        var tasks = Option(args, "--tasks", 4000);
        var proplets = Option(args, "--proplets", 3);
        var clients = Option(args, "--clients", 16);
        var moduleKib = Option(args, "--module-kib", 0, min: 0);
        var body = moduleKib == 0
            ? DefaultBody
            : $$"""{"name":"main","inputs":["1","2"],"file":"{{Convert.ToBase64String(System.Security.Cryptography.RandomNumberGenerator.GetBytes(moduleKib * 1024))}}"}""";
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

        await manager.WaitPropletsActiveAsync(proplets, null, null, cancellationToken);

        // Warm-up outside the clock, until the JIT has settled (see WarmUpAsync).
        await WarmUpAsync(count => RunTasksAsync(http, count, clients, cancellationToken, body: body), Option(args, "--warmup", 0, min: 0));
        // Where the time goes: a watcher on the broker sees each start message and each result go by.
        var seen = new ConcurrentDictionary<string, (long Start, long Result)>(StringComparer.Ordinal);
        await using var watcher = await BrokerWatcher.StartAsync(
            broker,
            baseTopic,
            "watch-" + manager.Tenant,
            (id, at) => seen.AddOrUpdate(id, _ => (at, 0), (_, v) => (at, v.Result)),
            // An error result fails its task, and WaitCompletedAsync fails the run on it: its time need not be told apart here.
            (id, at, error) => seen.AddOrUpdate(id, _ => (0, at), (_, v) => (v.Start, at)),
            cancellationToken);
        var stages = new ConcurrentBag<(string Id, long Start, long Started, long Done)>();
        var busyBefore = MachineBusy();
        var (selfBefore, postgresBefore, brokerBefore) = (ProcCpu.Ms(Environment.ProcessId), ProcCpu.ByName("postgres"), ProcCpu.ByName("mosquitto"));
        using var jitLog = JitLog.FromEnvironment();
        var dataSource = app.Services.GetRequiredService<Npgsql.NpgsqlDataSource>();
        var pgBefore = await PgWork.NowAsync(dataSource, cancellationToken);
        var jitBefore = JitWork.Now();
        var gcBefore = GcWork.Now();
        jitLog?.Start();
        var batches = CommandBatches.Listen();
        var stopwatch = Stopwatch.StartNew();
        var latencies = await RunTasksAsync(http, tasks, clients, cancellationToken, stages, body);
        stopwatch.Stop();
        batches.Dispose();
        jitLog?.Stop();
        var jit = JitWork.Now() - jitBefore;
        var gc = GcWork.Now() - gcBefore;
        var pg = await PgWork.NowAsync(dataSource, cancellationToken) - pgBefore;
        foreach (var line in jitLog?.Report() ?? [])
        {
            Console.WriteLine(line);
        }

        var busyMs = MachineBusy() - busyBefore;
        var selfMs = ProcCpu.Ms(Environment.ProcessId) - selfBefore;
        var postgresMs = ProcCpu.Since(postgresBefore, ProcCpu.ByName("postgres"));
        var brokerMs = ProcCpu.Since(brokerBefore, ProcCpu.ByName("mosquitto"));
        latencies.Sort();
        var tasksPerSecond = tasks / stopwatch.Elapsed.TotalSeconds;

        // Reference, same run and database: Marten alone (decide a create, append it, the inline task view, commit) at the
        // same concurrency. A task needs three such appends (create, start with its dispatch, result), so appends/s ÷ 3
        // is the ceiling the event store alone allows; ratio = what the whole manager reaches of it.
        // Its own warm-up first (the manager's side had its rounds): untimed, its first appends pay for JIT and plans.
        await ReferenceAppendsPerSecondAsync(app.Services, clients, 500, cancellationToken);
        var appendsPerSecond = await ReferenceAppendsPerSecondAsync(app.Services, clients, Math.Max(400, tasks), cancellationToken);
        Console.WriteLine(FormattableString.Invariant(
            $"manager case=dispatch{(settings?.GetValueOrDefault("MANAGER_DURABILITY_MODE") is { } mode ? " durability=" + mode : "")}{(moduleKib > 0 ? $" module_kib={moduleKib}" : "")} tasks={tasks} proplets={proplets} clients={clients} tasks_per_s={tasksPerSecond:F0} p50_ms={Percentile(latencies, 0.50):F1} p99_ms={Percentile(latencies, 0.99):F1} reference_appends_per_s={appendsPerSecond:F0} ratio={tasksPerSecond / (appendsPerSecond / 3):F2}"));
        PrintStages(stages, seen, batches);
        Console.WriteLine(FormattableString.Invariant(
            $"manager case=cpu machine_busy_ms_per_task={busyMs / tasks:F2} cores={Environment.ProcessorCount} stack_ms_per_task={(selfMs + postgresMs + brokerMs) / tasks:F2} process_ms_per_task={selfMs / tasks:F2} postgres_ms_per_task={postgresMs / tasks:F2} broker_ms_per_task={brokerMs / tasks:F2} {jit} {gc.PerUnit(tasks)} {pg.PerTask(tasks)}"));
        await stopHeartbeats.CancelAsync();
        await heartbeats;
        foreach (var client in simulated)
        {
            await client.DisposeAsync();
        }

        return (tasksPerSecond, Percentile(latencies, 0.50), Percentile(latencies, 0.99));
    }

    /// <summary>
    /// `manager --waiting [--tasks N]` (default 1,000): N tasks started with no proplet (each waits, with its reason),
    /// then M proplets appear; the clock runs from the proplets' start to no task waiting (all dispatched) and to the last
    /// task Completed. Prints tasks placed and completed per second and how many placement rounds dispatched them (distinct decision times of the
    /// task.dispatched events: one placement round is one transaction).
    /// </summary>
    private static async Task MeasureWaitingAsync(string[] args, CancellationToken cancellationToken)
    {
        var tasks = Option(args, "--tasks", 1000);
        var proplets = Option(args, "--proplets", 3);
        var clients = Option(args, "--clients", 16);
        const string schema = "bench_waiting";
        await using var manager = await BenchManager.StartAsync(schema, "wait", cancellationToken);
        var http = manager.Http;
        var next = -1;
        await Task.WhenAll(Enumerable.Range(0, clients).Select(_ => Task.Run(async () =>
        {
            while (Interlocked.Increment(ref next) < tasks)
            {
                var id = await CreateTaskAsync(http, DefaultBody, cancellationToken);
                await StartTaskAsync(http, id, cancellationToken);
            }
        }, cancellationToken)));

        var stopwatch = Stopwatch.StartNew();
        var simulated = new List<BrokerConnection>();
        for (var i = 0; i < proplets; i++)
        {
            simulated.Add(await StartPropletAsync(manager.Broker, manager.BaseTopic, Guid.NewGuid().ToString(), cancellationToken));
        }

        TimeSpan? placed = null;
        int completed;
        while ((completed = await GetTotalAsync(http, "/tasks?state=3&limit=1", cancellationToken)) < tasks)
        {
            if (placed is null && await GetTotalAsync(http, "/tasks?state=1&limit=1", cancellationToken) == 0)
            {
                placed = stopwatch.Elapsed;
            }

            if (stopwatch.Elapsed > TimeSpan.FromMinutes(5))
            {
                throw new BenchFailedException($"{completed} of {tasks} waiting tasks completed within 5 minutes ({(placed is null ? "some still waiting" : "all dispatched")})");
            }

            await Task.Delay(20, cancellationToken);
        }

        stopwatch.Stop();
        var dataSource = manager.App.Services.GetRequiredService<Npgsql.NpgsqlDataSource>();
        await using var rounds = dataSource.CreateCommand($"select count(distinct timestamp) from {schema}.mt_events where type = 'task.dispatched.v1'");
        var roundCount = (long)(await rounds.ExecuteScalarAsync(cancellationToken))!;
        var perSecond = tasks / stopwatch.Elapsed.TotalSeconds;
        Console.WriteLine(FormattableString.Invariant(
            $"manager case=waiting tasks={tasks} proplets={proplets} all_dispatched_s={(placed ?? stopwatch.Elapsed).TotalSeconds:F2} all_completed_s={stopwatch.Elapsed.TotalSeconds:F2} tasks_per_s={perSecond:F0} dispatch_rounds={roundCount}"));
        foreach (var client in simulated)
        {
            await client.DisposeAsync();
        }
    }

    private static async Task<double> ReferenceAppendsPerSecondAsync(IServiceProvider services, int writers, int tasks, CancellationToken cancellationToken)
    {
        var store = services.GetRequiredService<Marten.IDocumentStore>();
        var now = DateTimeOffset.UtcNow;
        var next = -1;
        var stopwatch = Stopwatch.StartNew();
        await Task.WhenAll(Enumerable.Range(0, writers).Select(_ => Task.Run(async () =>
        {
            while (Interlocked.Increment(ref next) < tasks)
            {
                var id = new Propeller.Domain.Tasks.TaskId(Guid.CreateVersion7());
                var decision = Propeller.Domain.Tasks.TaskDecider.Decide(
                    new Propeller.Domain.Tasks.TaskCommand.CreateTask(id, Propeller.Domain.Tasks.TaskSpec.Named("reference"), now), Propeller.Domain.Tasks.TaskState.Initial);
                await using var session = store.LightweightSession();
                session.Events.StartStream<Propeller.Domain.Tasks.TaskState>(id.Value, [.. decision.Events]);
                await session.SaveChangesAsync(cancellationToken);
            }
        }, cancellationToken)));
        return tasks / stopwatch.Elapsed.TotalSeconds;
    }

    /// <summary>
    /// Medians from the HTTP start: its response, the start message on the broker, the result on the broker, and the
    /// Completed state at the client (the last is the benchmark's latency); then the manager's command batches in the window
    /// (how many, their mean size and duration).
    /// </summary>
    private static void PrintStages(
        IEnumerable<(string Id, long Start, long Started, long Done)> stages, ConcurrentDictionary<string, (long Start, long Result)> seen, CommandBatches batches)
    {
        var rows = stages.Where(s => seen.TryGetValue(s.Id, out var v) && v.Start > 0 && v.Result > 0).Select(s => (s, v: seen[s.Id])).ToList();
        double Median(Func<((string Id, long Start, long Started, long Done) s, (long Start, long Result) v), long> to) =>
            Percentile([.. rows.Select(r => Stopwatch.GetElapsedTime(r.s.Start, to(r)).TotalMilliseconds).Order()], 0.5);
        Console.WriteLine(FormattableString.Invariant(
            $"manager case=stages tasks={rows.Count} start_response_ms={Median(r => r.s.Started):F1} start_message_ms={Median(r => r.v.Start):F1} result_message_ms={Median(r => r.v.Result):F1} completed_ms={Median(r => r.s.Done):F1} {batches}"));
    }

    private static async Task<List<double>> RunTasksAsync(
        HttpClient http, int count, int clients, CancellationToken cancellationToken, ConcurrentBag<(string Id, long Start, long Started, long Done)>? stages = null,
        string body = DefaultBody)
    {
        var latencies = new ConcurrentBag<double>();
        var next = -1;
        await Task.WhenAll(Enumerable.Range(0, clients).Select(_ => Task.Run(async () =>
        {
            while (Interlocked.Increment(ref next) < count)
            {
                var id = await CreateTaskAsync(http, body, cancellationToken);
                var start = Stopwatch.GetTimestamp();
                await StartTaskAsync(http, id, cancellationToken);
                var started = Stopwatch.GetTimestamp();
                await WaitCompletedAsync(http, id, cancellationToken);
                var done = Stopwatch.GetTimestamp();
                latencies.Add(Stopwatch.GetElapsedTime(start, done).TotalMilliseconds);
                stages?.Add((id, start, started, done));
            }
        }, cancellationToken)));
        return [.. latencies];
    }

    /// <summary>
    /// POST /tasks with <paramref name="body"/>; the new task's id. Any other answer (a problem body, a 503 while the
    /// manager sheds load) fails the run with its status and body, not with a missing-property exception.
    /// </summary>
    internal static async Task<string> CreateTaskAsync(HttpClient http, string body, CancellationToken cancellationToken)
    {
        using var created = await SendAsync(http, "/tasks", new StringContent(body, Encoding.UTF8, "application/json"), cancellationToken);
        var text = await created.Content.ReadAsStringAsync(cancellationToken);
        if (!created.IsSuccessStatusCode)
        {
            throw new BenchFailedException($"POST /tasks answered {(int)created.StatusCode}: {text}");
        }

        try
        {
            using var json = JsonDocument.Parse(text);
            return json.RootElement.GetProperty("id").GetString() ?? throw new BenchFailedException($"POST /tasks answered a null id: {text}");
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException)
        {
            throw new BenchFailedException($"POST /tasks answered {(int)created.StatusCode} without a task id: {text}");
        }
    }

    /// <summary>POST /tasks/{id}/start; any answer but a success fails the run with its status and body.</summary>
    internal static async Task StartTaskAsync(HttpClient http, string id, CancellationToken cancellationToken)
    {
        using var started = await SendAsync(http, $"/tasks/{id}/start", null, cancellationToken);
        if (!started.IsSuccessStatusCode)
        {
            throw new BenchFailedException($"POST /tasks/{id}/start answered {(int)started.StatusCode}: {await started.Content.ReadAsStringAsync(cancellationToken)}");
        }
    }

    /// <summary>
    /// GET <paramref name="path"/>'s JSON. An error answer (a 503 while PostgreSQL is unavailable, a 500) fails the run
    /// with the request, status and body, as a connection that fails does: GetFromJsonAsync threw HttpRequestException
    /// with a stack trace and no body.
    /// </summary>
    internal static async Task<JsonElement> GetJsonAsync(HttpClient http, string path, CancellationToken cancellationToken)
    {
        HttpResponseMessage answered;
        try
        {
            answered = await http.GetAsync(path, cancellationToken);
        }
        catch (HttpRequestException e)
        {
            throw Failed("GET", path, e);
        }

        using (answered)
        {
            var text = await answered.Content.ReadAsStringAsync(cancellationToken);
            if (!answered.IsSuccessStatusCode)
            {
                throw new BenchFailedException($"GET {path} answered {(int)answered.StatusCode}: {text}");
            }

            try
            {
                using var json = JsonDocument.Parse(text);
                return json.RootElement.Clone();
            }
            catch (JsonException)
            {
                throw new BenchFailedException($"GET {path} answered {(int)answered.StatusCode} with a body that is not JSON: {text}");
            }
        }
    }

    /// <summary>The <c>total</c> of a list's page (GET /tasks?state=…, /proplets?status=…), by <see cref="GetJsonAsync"/>.</summary>
    internal static async Task<int> GetTotalAsync(HttpClient http, string path, CancellationToken cancellationToken)
    {
        var page = await GetJsonAsync(http, path, cancellationToken);
        return page.ValueKind == JsonValueKind.Object && page.TryGetProperty("total", out var total) && total.TryGetInt32(out var n)
            ? n
            : throw new BenchFailedException($"GET {path} answered without a total: {page.GetRawText()}");
    }

    /// <summary>A request that got no answer (the connection failed or was closed): the run fails, naming it, with no stack trace.</summary>
    private static BenchFailedException Failed(string method, string path, HttpRequestException e) =>
        new($"{method} {path} failed: {e.Message}{(e.InnerException is { } inner ? " (" + inner.Message + ")" : "")}");

    /// <summary>
    /// POST <paramref name="path"/>; a connection the manager closed (Kestrel answers a body over its limit, a
    /// --module-kib too large, with 413 and a reset while the client still sends) fails the run, with no stack trace.
    /// </summary>
    private static async Task<HttpResponseMessage> SendAsync(HttpClient http, string path, HttpContent? content, CancellationToken cancellationToken)
    {
        try
        {
            return await http.PostAsync(path, content, cancellationToken);
        }
        catch (HttpRequestException e)
        {
            throw Failed("POST", path, e);
        }
    }

    /// <summary>
    /// Waits for task <paramref name="id"/> to end, by long polling (GET /tasks/{id}?wait=10s) rather than a tight poll
    /// loop that would load the manager. Completed returns; any other end (Failed, Skipped, Interrupted: the wait answers
    /// at once for them, so looping on would spin) or no end within 2 minutes fails the run with the task's JSON.
    /// </summary>
    internal static async Task WaitCompletedAsync(HttpClient http, string id, CancellationToken cancellationToken)
    {
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            var task = await GetJsonAsync(http, $"/tasks/{id}?wait=10s", cancellationToken);
            switch ((Propeller.Domain.Tasks.TaskStatus)task.GetProperty("state").GetInt32())
            {
                case Propeller.Domain.Tasks.TaskStatus.Completed:
                    return;
                case Propeller.Domain.Tasks.TaskStatus.Failed or Propeller.Domain.Tasks.TaskStatus.Skipped or Propeller.Domain.Tasks.TaskStatus.Interrupted:
                    throw new BenchFailedException($"task {id} ended without completing: {task.GetRawText()}");
                default:
                    if (deadline.Elapsed > TimeSpan.FromMinutes(2))
                    {
                        throw new BenchFailedException($"task {id} did not end within 2 minutes: {task.GetRawText()}");
                    }

                    break;
            }
        }
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
    internal static double MachineBusy() => File.Exists("/proc/stat") ? BusyMs(File.ReadLines("/proc/stat").First()) : 0;

    /// <summary>
    /// The busy milliseconds of /proc/stat's aggregate `cpu` line: user + nice + system + irq + softirq (fields 1, 2, 3, 6
    /// and 7 of proc(5)). Not idle and iowait; not steal either (time the hypervisor gave another guest: on a shared VM
    /// it is not work of this machine, and it grows when the machine is slow); not guest and guest_nice, which the kernel
    /// already counts inside user and nice.
    /// </summary>
    internal static double BusyMs(string cpuLine)
    {
        var fields = cpuLine.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        if (fields.Length < 8 || !string.Equals(fields[0], "cpu", StringComparison.Ordinal))
        {
            throw new FormatException($"not /proc/stat's cpu line: {cpuLine}");
        }

        long Field(int index) => long.Parse(fields[index + 1], NumberStyles.None, CultureInfo.InvariantCulture);
        return (Field(0) + Field(1) + Field(2) + Field(5) + Field(6)) * 1000.0 / 100; // USER_HZ = 100
    }

    internal static double Percentile(List<double> sorted, double p) => sorted.Count == 0 ? 0 : sorted[Math.Min(sorted.Count - 1, (int)Math.Ceiling(p * sorted.Count) - 1)];

    /// <summary>An integer option of at least <paramref name="min"/>; anything else ends the run with a usage error (<see cref="BenchArgs"/>).</summary>
    internal static int Option(string[] args, string name, int fallback, int min = 1) => BenchArgs.Int(args, name, fallback, min);
}
