using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using MQTTnet.Protocol;
using Propeller.Broker;
using Propeller.Broker.Tests;
using Propeller.Contracts.Mqtt;
using Propeller.Proxy.Oci;
using Propeller.Tests.Shared;

namespace Propeller.EndToEnd.Tests;

/// <summary>
/// Real processes under a random mix of operations and faults: tasks (most of them work, some daemons, some latent
/// components invoked now and then) created, started, stopped, started again and deleted while proplets are killed
/// (SIGKILL) or stopped (SIGTERM) and started again under their ids, frozen (SIGSTOP, then SIGCONT) or cut off from the
/// broker, the manager is killed or stopped (SIGTERM) and started again, or frozen, the
/// broker is killed, restarted or frozen, the manager's PostgreSQL connection is cut or slowed, the proxy that serves the image
/// tasks (an <c>image_url</c> at the local registry) is killed and started again, and a stranger publishes garbage on every
/// topic the processes read (<see cref="Garbage"/>) and sends the API requests no client should (<see cref="HttpGarbage"/>:
/// never answered 500). Every manager node gates the API with the seed's auth plugin (examples/plugins/plugin-auth: each
/// client creates and starts as its own user; an intruder's start of another's task must be refused). When the faults end, every latent
/// task started last answers an invocation with its own number, and every task must settle: none left Scheduled or
/// Running, each completed task's result its own, no attempt completed twice, every history readable. The seed is
/// printed with a failure (docs/operations.md lists the settings that replay, lengthen, narrow and record a run).
/// </summary>
[Collection("e2e")]
public sealed class ChaosTests : IDisposable
{
    /// <summary>The manager nodes' plugin directory (MANAGER_PLUGIN_DIR): the seed's auth plugin.</summary>
    private readonly DirectoryInfo _plugins = Directory.CreateTempSubdirectory("chaos-plugins");

    /// <summary>main(n, a): counts down n million, then answers a (each task's own number, so a result is checked to be its own).</summary>
    private static readonly string Work = Convert.ToBase64String(Wat.ToWasm("""
        (module
          (func (export "main") (param $n i32) (param $a i32) (result i32)
            (local $i i32)
            (local.set $i (i32.mul (local.get $n) (i32.const 1000000)))
            (block $done
              (loop $again
                (br_if $done (i32.eqz (local.get $i)))
                (local.set $i (i32.sub (local.get $i) (i32.const 1)))
                (br $again)))
            (local.get $a)))
        """));

    /// <summary>A daemon that sleeps 100 ms at a time for ever (WASI poll_oneoff on the monotonic clock).</summary>
    private static readonly string Sleeper = Convert.ToBase64String(Modules.Sleeps(TimeSpan.FromMilliseconds(100), forever: true));

    private static readonly string Calculator = Convert.ToBase64String(Components.Calculator);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public void Dispose() => _plugins.Delete(true);

    [Fact]
    public async Task UnderRandomOperationsAndFaults_EveryTaskSettlesWithItsOwnResult()
    {
        var seed = int.TryParse(Environment.GetEnvironmentVariable("PROPELLER_CHAOS_SEED"), out var s) ? s : Random.Shared.Next();
        var seconds = int.TryParse(Environment.GetEnvironmentVariable("PROPELLER_CHAOS_SECONDS"), out var d) ? d : 40;
        var twoNodes = Environment.GetEnvironmentVariable("PROPELLER_CHAOS_NODES") == "2";
        var journal = new StringBuilder($"seed {seed}\n");
        var (relay, connectionString) = await TcpRelay.InFrontOfTestPostgresAsync();
        await File.WriteAllBytesAsync(Path.Combine(_plugins.FullName, "10-plugin-auth.wasm"), Propeller.Plugins.Tests.Support.Examples.Get("plugin-auth"), Ct);
        await using var relayed = relay;
        await using var broker = await MosquittoProcess.StartAsync(_ => "allow_anonymous true", Ct);
        await using var cluster = await Cluster.StartAsync("e2e_chaos", new Dictionary<string, string>
        {
            ["EventStore__ConnectionString"] = connectionString,
            ["MANAGER_PROPLET_LIVENESS_WINDOW"] = "5",
            ["MANAGER_PROPLET_RECONNECT_ALLOWANCE"] = "5s",
            ["MANAGER_MAX_REDISPATCHES"] = "100",
            ["MANAGER_INVOKE_TIMEOUT"] = "10s", // an invocation during a fault answers within the client's timeout
            ["MANAGER_PLUGIN_DIR"] = _plugins.FullName,
        }, Ct, broker.Address);
        // Each proplet reaches the broker through a relay of its own, which a partition cuts.
        await using var links = new Links(broker.Port);
        var proplets = new List<string>();
        for (var i = 0; i < 3; i++)
        {
            var id = Guid.NewGuid().ToString();
            proplets.Add((await cluster.StartPropletAsync(links.Environment(id), Ct, id)).Id);
        }

        // The image tasks' module at the local registry (scripts/infra.sh), and a proxy that pulls it for the proplets.
        var image = $"{ProxyTests.Registry}/chaos/add-{Guid.NewGuid():N}:v1";
        using (var registryHttp = new HttpClient())
        {
            await new RegistryClient(registryHttp, new RegistryAuth(null, TimeProvider.System), _ => true).PushWasmAsync(ImageReference.Parse(image), Modules.Addition, Ct);
        }

        await cluster.StartProxyAsync(null, Ct);

        // With PROPELLER_CHAOS_NODES=2 a second manager node on the same database (Balanced) serves half the clients, and
        // is killed and started again too.
        var nodes = new[] { cluster.Http, cluster.Http };
        ChildProcess? second = null;
        async Task StartSecondNodeAsync() => (nodes[1], second) = await cluster.StartManagerNodeAsync("manager-b", null, Ct);
        if (twoNodes)
        {
            await StartSecondNodeAsync();
        }

        var tasks = new System.Collections.Concurrent.ConcurrentDictionary<string, Tracked>();
        var outcomes = new System.Collections.Concurrent.ConcurrentDictionary<string, int>();
        var until = DateTime.UtcNow + TimeSpan.FromSeconds(seconds);
        var number = 0;
        void Count(string key) => outcomes.AddOrUpdate(key, 1, (_, n) => n + 1);

        // Four clients, each working on tasks of its own (so the last request that succeeded on a task is known), and
        // the faults beside them.
        async Task ClientAsync(int seedOfClient, int node)
        {
            var random = new Random(seedOfClient);
            var user = $"user-{seedOfClient}";
            var mine = new List<Tracked>();
            while (DateTime.UtcNow < until)
            {
                var roll = random.NextDouble();
                var live = mine.Where(t => !t.Deleted).ToList();
                if (roll < 0.40 || live.Count == 0)
                {
                    var n = Interlocked.Increment(ref number);
                    var kind = random.Next(0, 20) switch { 0 => Kind.Daemon, 1 => Kind.Latent, 2 => Kind.Image, _ => Kind.Work };
                    object body = kind switch
                    {
                        Kind.Daemon => new { name = "_start", file = Sleeper, daemon = true },
                        Kind.Latent => new { name = "add", file = Calculator, inputs = new[] { n.ToString(System.Globalization.CultureInfo.InvariantCulture), "0" }, latent = true },
                        Kind.Image => new { name = "main", image_url = image, inputs = new[] { n, 0 } },
                        _ => new { name = "main", file = Work, inputs = new[] { random.Next(0, 10) == 0 ? random.Next(100, 600) : random.Next(0, 50), n } },
                    };
                    var (status, text) = await SendAsync(nodes[node], HttpMethod.Post, "/tasks", body, user);
                    Count($"create {Code(status)}");
                    if (status == HttpStatusCode.Created)
                    {
                        var task = new Tracked(JsonDocument.Parse(text).RootElement.GetProperty("id").GetString()!, kind, n, user);
                        tasks[task.Id] = task;
                        mine.Add(task);
                        await OperateAsync(task, "start", HttpMethod.Post, $"/tasks/{task.Id}/start", node);
                    }
                }
                else
                {
                    var task = live[random.Next(live.Count)];
                    _ = roll switch
                    {
                        < 0.43 => await IntrudeAsync(task, node),
                        < 0.80 when task.Kind == Kind.Latent => await InvokeAsync(task, node),
                        < 0.65 => await OperateAsync(task, "stop", HttpMethod.Post, $"/tasks/{task.Id}/stop", node),
                        < 0.90 => await OperateAsync(task, "start", HttpMethod.Post, $"/tasks/{task.Id}/start", node),
                        _ => await OperateAsync(task, "delete", HttpMethod.Delete, $"/tasks/{task.Id}", node),
                    };
                }

                await Task.Delay(random.Next(0, 200), Ct);
            }
        }

        // A deployed latent task answers an invocation with its own number (add(n, 0)); during faults it may fail (500).
        var wrongAnswers = new System.Collections.Concurrent.ConcurrentQueue<string>();
        async Task<bool> InvokeAsync(Tracked task, int node)
        {
            var (status, text) = await SendAsync(nodes[node], HttpMethod.Post, $"/tasks/{task.Id}/invoke", null, task.User);
            task.Note("invoke", status);
            Count($"invoke {Code(status)}");
            if (status == HttpStatusCode.OK && text != $$"""{"invoked":true,"results":"{{task.Number}}"}""")
            {
                wrongAnswers.Enqueue($"{task}: invoked, answered {text}");
            }

            return status == HttpStatusCode.OK;
        }

        async Task<bool> OperateAsync(Tracked task, string op, HttpMethod method, string path, int node)
        {
            var (status, _) = await SendAsync(nodes[node], method, path, null, task.User);
            task.Note(op, status);
            Count($"{op} {Code(status)}");
            return true;
        }

        // Another user's start: the auth plugin refuses it (403) on every node, whatever the task's state; it changes nothing.
        async Task<bool> IntrudeAsync(Tracked task, int node)
        {
            var (status, text) = await SendAsync(nodes[node], HttpMethod.Post, $"/tasks/{task.Id}/start", null, "intruder");
            Count($"intruder start {Code(status)}");
            if (status is { } code && (int)code < 300)
            {
                wrongAnswers.Enqueue($"{task}: an intruder's start answered {(int)code}: {text}");
            }

            return true;
        }

        // The faults by weight; PROPELLER_CHAOS_FAULTS (names, comma-separated) keeps only some.
        var faults = new (string Name, int Weight, Func<Random, Task> Act)[]
        {
            ("kill proplet", 10, async random =>
            {
                var victim = proplets[random.Next(proplets.Count)];
                foreach (var process in cluster.Processes.Where(p => p.Name == "proplet-" + victim[..8] && !p.HasExited))
                {
                    process.Kill();
                }

                await Task.Delay(random.Next(0, 3000), Ct);
                await cluster.StartPropletAsync(links.Environment(victim), Ct, victim);
            }),
            ("stop proplet", 4, async random =>
            {
                var victim = proplets[random.Next(proplets.Count)];
                foreach (var process in cluster.Processes.Where(p => p.Name == "proplet-" + victim[..8] && !p.HasExited))
                {
                    await process.TerminateAsync(TimeSpan.FromSeconds(20), Ct);
                }

                await Task.Delay(random.Next(0, 3000), Ct);
                await cluster.StartPropletAsync(links.Environment(victim), Ct, victim);
            }),
            ("partition proplet", 5, async random =>
            {
                var link = links[proplets[random.Next(proplets.Count)]];
                link.Cut();
                await Task.Delay(random.Next(1000, 8000), Ct);
                await link.RestoreAsync();
            }),
            ("kill proxy", 3, async random =>
            {
                foreach (var process in cluster.Processes.Where(p => p.Name == "proxy" && !p.HasExited))
                {
                    process.Kill();
                }

                await Task.Delay(random.Next(0, 3000), Ct);
                await cluster.StartProxyAsync(null, Ct);
            }),
            ("pause proplet", 4, async random =>
            {
                // Frozen where it is (SIGSTOP): its connection stays up, its heartbeats and results stop; after up to 12 s
                // (past the liveness window) it goes on as if nothing happened.
                var victim = proplets[random.Next(proplets.Count)];
                await FreezeAsync(Signals(p => p.Name == "proplet-" + victim[..8]), random.Next(1000, 12_000));
            }),
            ("kill manager", 3, async _ => await cluster.RestartManagerAsync(Ct)),
            ("stop manager", 2, async _ => await cluster.RestartManagerAsync(Ct, graceful: true)),
            ("pause manager", 2, async random =>
            {
                // A manager node frozen mid-work, for up to 30 s: past MANAGER_NODE_STALE_TIMEOUT (10 s, two checks) the
                // other node takes over its envelopes, agents and broker session, and the frozen one then goes on (a zombie).
                var name = twoNodes && random.Next(2) == 0 ? "manager-b" : "manager";
                await FreezeAsync(Signals(p => p.Name == name), random.Next(1000, 30_000));
            }),
            ("kill node b", twoNodes ? 3 : 0, async random =>
            {
                second!.Kill();
                await Task.Delay(random.Next(0, 3000), Ct);
                await StartSecondNodeAsync();
            }),
            ("kill broker", 1, async random =>
            {
                await broker.KillAsync(Ct);
                await Task.Delay(random.Next(500, 4000), Ct);
                await broker.StartAsync(Ct);
            }),
            ("pause broker", 1, async random =>
            {
                // Frozen with every connection open: publishes and their acknowledgements wait, keep-alives go unanswered.
                await FreezeAsync([signal => broker.SignalAsync(signal, CancellationToken.None)], random.Next(500, 15_000));
            }),
            ("restart broker", 1, async random =>
            {
                await broker.StopAsync(Ct);
                await Task.Delay(random.Next(500, 4000), Ct);
                await broker.StartAsync(Ct);
            }),
            ("cut postgres", 5, async random =>
            {
                relay.Cut();
                await Task.Delay(random.Next(500, 4000), Ct);
                await relay.RestoreAsync();
            }),
            ("slow postgres", 3, async random =>
            {
                // Every round trip to PostgreSQL takes 50-400 ms longer for a while: commands, heartbeats and the liveness
                // checks all wait on it; a proplet that keeps beating must not be taken for dead.
                relay.Latency = TimeSpan.FromMilliseconds(random.Next(50, 400));
                await Task.Delay(random.Next(2000, 10_000), Ct);
                relay.Latency = TimeSpan.Zero;
            }),
            ("garbage", 4, async random =>
            {
                // Hostile messages on every topic the manager, the proplets and the proxy read, from a client of its own.
                await using var client = new BrokerConnection(new BrokerOptions { ClientId = $"garbage-{random.Next()}" }.WithAddress(broker.Address));
                await client.StartAsync(Ct);
                var known = tasks.Keys.ToList();
                var baseTopic = Topics.Base(cluster.Tenant, "c1");
                var someTask = known.Count > 0 ? known[random.Next(known.Count)] : Guid.NewGuid().ToString();
                foreach (var (path, payload) in Garbage(random, someTask, proplets[random.Next(proplets.Count)]))
                {
                    await client.PublishAsync($"{baseTopic}/{path}", payload, MqttQualityOfServiceLevel.AtLeastOnce, Ct);
                }

                // And on the API: a client error (4xx) for each, never a 500 (a 503 is an outage's answer).
                foreach (var (method, path, body) in HttpGarbage(someTask))
                {
                    var (status, text) = await SendRawAsync(nodes[random.Next(nodes.Length)], method, path, body);
                    Count($"garbage {Code(status)}");
                    if (status is { } code && (int)code >= 500 && code != HttpStatusCode.ServiceUnavailable)
                    {
                        wrongAnswers.Enqueue($"garbage {method} {path[..Math.Min(path.Length, 80)]} answered {(int)code}: {text[..Math.Min(text.Length, 300)]}");
                    }
                }
            }),
        };
        if (Environment.GetEnvironmentVariable("PROPELLER_CHAOS_FAULTS") is { Length: > 0 } only)
        {
            faults = faults.Where(f => only.Split(',').Contains(f.Name.Replace(' ', '-'))).ToArray();
        }

        // The live processes of the cluster that match, as senders of a signal.
        List<Func<string, Task>> Signals(Func<ChildProcess, bool> match) =>
            [.. cluster.Processes.Where(p => !p.HasExited && match(p)).Select(p => (Func<string, Task>)p.SignalAsync)];

        // SIGSTOP, a while, then SIGCONT (also when the test is cancelled meanwhile).
        static async Task FreezeAsync(IReadOnlyList<Func<string, Task>> signal, int milliseconds)
        {
            foreach (var send in signal)
            {
                await send("STOP");
            }

            try
            {
                await Task.Delay(milliseconds, Ct);
            }
            finally
            {
                foreach (var send in signal)
                {
                    await send("CONT");
                }
            }
        }

        async Task FaultsAsync()
        {
            var random = new Random(seed);
            var total = faults.Sum(f => f.Weight);
            while (DateTime.UtcNow < until && total > 0)
            {
                await Task.Delay(random.Next(1000, 4000), Ct);
                var roll = random.Next(total);
                var fault = faults.First(f => (roll -= f.Weight) < 0);
                journal.AppendLine(FormattableString.Invariant($"{DateTime.UtcNow:HH:mm:ss.fff} {fault.Name}")); // only this loop writes it until the end
                await fault.Act(random);
                Count(fault.Name);
            }
        }

        await Task.WhenAll(Enumerable.Range(0, 4).Select(i => ClientAsync(seed + 1 + i, i % 2)).Append(FaultsAsync()));

        // Every latent task started last is deployed somewhere and answers (a deployment lost with its proplet is
        // deployed again: the proplet's report lacks it, or the proplet went offline).
        foreach (var latent in tasks.Values.Where(t => t.Kind == Kind.Latent && !t.Deleted && !t.Uncertain && t.LastSucceeded == "start"))
        {
            try
            {
                await cluster.WaitUntilAsync($"{latent} to answer an invocation", () => InvokeAsync(latent, 0), TimeSpan.FromSeconds(90), Ct);
            }
            catch (TimeoutException)
            {
                wrongAnswers.Enqueue($"{latent}: never answered an invocation");
            }
        }

        // Every daemon started last runs on the proplet its task names (a daemon lost with its proplet, killed or stopped,
        // is started there again when the proplet reports it lacks it, or re-dispatched when it went offline).
        foreach (var daemon in tasks.Values.Where(t => t.Kind == Kind.Daemon && !t.Deleted && !t.Uncertain && t.LastSucceeded == "start"))
        {
            try
            {
                await cluster.WaitUntilAsync(
                    $"{daemon} to run on its proplet",
                    async () =>
                    {
                        var (status, text) = await SendAsync(cluster.Http, HttpMethod.Get, $"/tasks/{daemon.Id}", null);
                        if (status != HttpStatusCode.OK)
                        {
                            return false;
                        }

                        using var view = JsonDocument.Parse(text);
                        if (view.RootElement.GetProperty("state").GetInt32() != 3 || view.RootElement.GetProperty("proplet_id").GetString() is not { Length: > 8 } on)
                        {
                            return false;
                        }

                        return cluster.Processes.Any(p => p.Name == "proplet-" + on[..8] && !p.HasExited && Unended(p.Output).Contains(daemon.Id));
                    },
                    TimeSpan.FromSeconds(90),
                    Ct);
            }
            catch (TimeoutException)
            {
                wrongAnswers.Enqueue($"{daemon}: not running on the proplet its task names");
            }
        }

        // The daemons and latent tasks still running are stopped (a completed daemon is stopped as a running task is).
        foreach (var daemon in tasks.Values.Where(t => t.Kind is Kind.Daemon or Kind.Latent && (!t.Deleted || t.Uncertain)))
        {
            for (var tries = 1; ; tries++)
            {
                var (status, _) = await SendAsync(cluster.Http, HttpMethod.Post, $"/tasks/{daemon.Id}/stop", null);
                daemon.Note("stop", status);
                Count($"final stop {Code(status)}");
                if (status is HttpStatusCode.OK or HttpStatusCode.Conflict or HttpStatusCode.NotFound || tries == 20)
                {
                    break;
                }

                await Task.Delay(500, Ct);
            }
        }

        journal.AppendLine(string.Join(", ", outcomes.OrderBy(o => o.Key).Select(o => $"{o.Key}: {o.Value}")));

        // Settled: nothing left waiting or running.
        var remaining = tasks.Values.Where(t => !t.Deleted || t.Uncertain).ToList();
        var states = new Dictionary<string, JsonElement>();
        var found = new List<string>();
        async Task WriteJournalAsync()
        {
            if (Environment.GetEnvironmentVariable("PROPELLER_CHAOS_JOURNAL") is { Length: > 0 } file)
            {
                var outputs = cluster.Processes.Select(p => $"--- {p.Name}\n{p.Output}");
                var ends = remaining.Select(t => $"{t} -> {(states.TryGetValue(t.Id, out var x) ? x.GetRawText() : "404")}");
                await File.WriteAllTextAsync(file, $"{journal}\n{string.Join("\n", found)}\n{string.Join("\n", ends)}\n{string.Join("\n", outputs)}", Ct);
            }
        }

        try
        {
            await cluster.WaitUntilAsync(
                "every task to settle",
                async () =>
                {
                    foreach (var task in remaining)
                    {
                        using var response = await cluster.Http.GetAsync($"/tasks/{task.Id}", Ct);
                        if (response.StatusCode == HttpStatusCode.NotFound)
                        {
                            states.Remove(task.Id);
                            continue;
                        }

                        response.EnsureSuccessStatusCode();
                        states[task.Id] = JsonDocument.Parse(await response.Content.ReadAsStringAsync(Ct)).RootElement.Clone();
                    }

                    return states.Values.All(t => t.GetProperty("state").GetInt32() is not (1 or 2));
                },
                TimeSpan.FromSeconds(180),
                Ct,
                () => journal + string.Join("\n", states.Where(t => t.Value.GetProperty("state").GetInt32() is 1 or 2).Select(t => $"{tasks[t.Key]} {t.Value.GetRawText()}")));

            // And nothing left running on a proplet: each run a live proplet accepted has ended there (its log says so).
            var running = new List<string>();
            await cluster.WaitUntilAsync(
                "the proplets' runs to end",
                () =>
                {
                    running = cluster.Processes.Where(p => p.Name.StartsWith("proplet-", StringComparison.Ordinal) && !p.HasExited).SelectMany(p => Unended(p.Output).Select(id => $"{p.Name}: {id}")).ToList();
                    return Task.FromResult(running.Count == 0);
                },
                TimeSpan.FromSeconds(30),
                Ct,
                () => journal + string.Join("\n", running));
        }
        catch (TimeoutException)
        {
            await WriteJournalAsync();
            throw;
        }

        foreach (var task in remaining)
        {
            if (!states.TryGetValue(task.Id, out var state))
            {
                if (!task.Deleted)
                {
                    found.Add($"{task}: gone (404) though never deleted");
                }

                continue;
            }

            if (task.Deleted && !task.Uncertain)
            {
                found.Add($"{task}: still there after its delete");
            }

            var history = (await cluster.HistoryAsync(task.Id, Ct)).EnumerateArray().ToList();
            if (!state.TryGetProperty("env", out var env) || env.ValueKind != JsonValueKind.Object || !env.TryGetProperty("PROPELLER_CREATED_BY", out var creator) || creator.GetString() != task.User)
            {
                found.Add($"{task}: not enriched with its creator {task.User} by the auth plugin: {state.GetRawText()}");
            }

            if (history.Count == 0 || !history[0].TryGetProperty("headers", out var headers) || !headers.TryGetProperty("plugins", out var decisions)
                || !(decisions.GetString() ?? "").Contains("\"hook\":\"authorize\"", StringComparison.Ordinal))
            {
                found.Add($"{task}: its creation carries no authorize decision: {(history.Count > 0 ? history[0].GetRawText() : "no history")}");
            }

            var code = state.GetProperty("state").GetInt32();
            if (code == 3 && state.GetProperty("results").ValueKind == JsonValueKind.String && state.GetProperty("results").GetString() != (task.Kind is Kind.Work or Kind.Image ? task.Number.ToString(System.Globalization.CultureInfo.InvariantCulture) : ""))
            {
                found.Add($"{task}: completed with {state.GetProperty("results")}, not its own number");
            }

            // Once per dispatch: a daemon re-dispatched after its proplet went away is completed again by its "started"
            // result there; a second completion with no dispatch between is a result applied twice.
            var runs = history.Select(e => e.GetProperty("type").GetString()).Where(t => t is "task.completed.v1" or "task.dispatched.v1").ToList();
            var twice = runs.Zip(runs.Skip(1)).Count(p => p is ("task.completed.v1", "task.completed.v1"));
            if (twice > 0)
            {
                found.Add($"{task}: completed {twice + 1} times without a dispatch between");
            }

            if (!task.Uncertain && task.LastSucceeded == "start" && code is not (3 or 4))
            {
                found.Add($"{task}: started last, yet {state.GetRawText()}");
            }

            if (!task.Uncertain && task.LastSucceeded == "stop" && code != 6)
            {
                found.Add($"{task}: stopped last, yet {state.GetRawText()}");
            }

            if (code == 4)
            {
                found.Add($"{task}: failed: {state.GetProperty("error")}");
            }
        }

        var errors = cluster.Processes.SelectMany(p => p.Output.Split('\n').Where(l => l.Contains("Unhandled exception", StringComparison.OrdinalIgnoreCase)).Select(l => $"{p.Name}: {l}")).ToList();
        found.AddRange(errors);
        found.AddRange(wrongAnswers);
        await WriteJournalAsync();
        found.ShouldBeEmpty(journal + "\n" + cluster.Logs());
    }

    /// <summary>
    /// What the garbage fault publishes: payloads that are not JSON, not objects, nested past any parser's depth, or
    /// hold fields of the wrong type, on each topic the manager, the proplets and the proxy read. None may crash a
    /// process, fail a task or change one: a result naming a real task (<paramref name="task"/>) names an attempt it
    /// never had (ignored, recorded as such); a start or a stop names a task that does not exist (the proplet's error
    /// result for it finds no task); a discovery or a heartbeat names a proplet that does not exist (<paramref
    /// name="proplet"/> is a real one: named as the target of those starts, and in metrics); every manager node
    /// registers it at once.
    /// </summary>
    private static IEnumerable<(string Path, byte[] Payload)> Garbage(Random random, string task, string proplet)
    {
        var stranger = Guid.NewGuid().ToString();
        var noise = new byte[random.Next(1, 2048)];
        random.NextBytes(noise);
        var deep = Encoding.UTF8.GetBytes(new string('[', 100_000));
        byte[] Text(string text) => Encoding.UTF8.GetBytes(text);
        string[] inbound = [Topics.Results, Topics.PropletCreate, Topics.PropletAlive, Topics.PropletMetrics, Topics.TaskMetrics, Topics.InvokeResults, Topics.Start, Topics.Stop, Topics.Invoke, Topics.RegistryRequest, Topics.RegistryChunks, Topics.RegistryBinaryChunks, Topics.RegistryFailure];
        foreach (var path in inbound)
        {
            yield return (path, noise);
            yield return (path, deep);
            yield return (path, []);
            yield return (path, Text("{not json"));
            yield return (path, Text("[1,2]"));
            yield return (path, Text("null"));
            yield return (path, Text("""{"task_id":42,"proplet_id":[],"id":{"a":1},"app_name":7}"""));
        }

        yield return (Topics.Results, Text($$"""{"task_id":"{{task}}","proplet_id":"{{stranger}}","results":"garbage","error":null,"attempt":1000000}"""));
        yield return (Topics.Results, Text($$"""{"task_id":"{{task}}","proplet_id":"{{stranger}}","results":"garbage","error":"garbage","attempt":1000000,"running":false}"""));
        yield return (Topics.Results, Text($$"""{"task_id":"{{stranger}}","proplet_id":"{{proplet}}","results":"garbage","error":null}"""));
        // Proplets that do not exist: the discovery registers one that is never alive; the heartbeat registers one alive
        // for a liveness window (as a proplet's first heartbeat does), whose tasks are then re-dispatched.
        yield return (Topics.PropletCreate, Text($$"""{"proplet_id":"{{Guid.NewGuid()}}","namespace":5,"metadata":"none","tasks":"all of them"}"""));
        yield return (Topics.PropletAlive, Text($$"""{"proplet_id":"{{Guid.NewGuid()}}","status":[]}"""));
        yield return (Topics.PropletMetrics, Text($$"""{"proplet_id":"{{proplet}}","cpu_metrics":"hot","memory_metrics":[1],"timestamp":[]}"""));
        yield return (Topics.TaskMetrics, Text($$"""{"task_id":"{{task}}","proplet_id":5,"metrics":"many"}"""));
        yield return (Topics.InvokeResults, Text($$"""{"task_id":"{{task}}","invocation_id":5,"results":[]}"""));
        yield return (Topics.InvokeResults, Text($$"""{"task_id":"{{task}}","invocation_id":"{{stranger}}","results":"1"}"""));
        yield return (Topics.Start, Text($$"""{"id":"{{stranger}}","name":"main","file":"!!! not base64","proplet_id":"{{proplet}}"}"""));
        yield return (Topics.Start, Text($$"""{"id":"{{stranger}}","name":"main","file":"AGFzbQEAAAA=","cli_args":"--everything","inputs":[1e400],"proplet_id":"{{proplet}}"}"""));
        yield return (Topics.Start, Text($$"""{"id":"{{stranger}}","name":7,"image_url":"registry.invalid/none:v1","daemon":"yes","proplet_id":"{{proplet}}"}"""));
        yield return (Topics.Stop, Text($$"""{"id":5,"attempt":"one"}"""));
        yield return (Topics.Stop, Text($$"""{"id":"{{stranger}}","attempt":1,"dispatch":-4}"""));
        yield return (Topics.Invoke, Text($$"""{"id":"{{task}}","invocation_id":5,"inputs":"all"}"""));
        yield return (Topics.RegistryChunks, Text("""{"app_name":"registry.invalid/none:v1","chunk_idx":-1,"total_chunks":0,"data":"%%%"}"""));
    }

    /// <summary>
    /// What the garbage fault sends the API: bodies that are not JSON, nested past any parser's depth, not UTF-8, of the
    /// wrong shape, and paths and queries no client should send. None may change a task: a body sent to a real task
    /// (<paramref name="task"/>) is one the API must refuse.
    /// </summary>
    private static IEnumerable<(HttpMethod Method, string Path, byte[]? Body)> HttpGarbage(string task)
    {
        var stranger = Guid.NewGuid().ToString();
        byte[] Text(string text) => Encoding.UTF8.GetBytes(text);
        byte[][] refused = [Encoding.UTF8.GetBytes(new string('[', 100_000)), [0xff, 0xfe, 0x7b, 0x80], Text("{not json"), Text("[]"), Text("null"), Text("""{"name":5}"""), []];
        foreach (var body in refused)
        {
            yield return (HttpMethod.Post, "/tasks", body);
            yield return (HttpMethod.Put, $"/tasks/{task}", body);
            yield return (HttpMethod.Post, $"/tasks/{stranger}/invoke", body);
        }

        foreach (var body in new[]
                 {
                     """{"name":"garbage","inputs":"ten"}""", """{"name":"garbage","cli_args":[1,{}]}""", """{"name":"garbage","env":{"A":[1]}}""",
                     """{"name":"garbage","file":"%%%"}""", """{"name":"garbage","metadata":"m"}""", """{"name":"garbage","proplet_id":5}""",
                     """{"name":"garbage","priority":"high"}""", """{"name":"garbage\u0000"}""", """{"name":"garbage","depends_on":"x"}""",
                     $$"""{"name":"{{new string('g', 1 << 20)}}"}""",
                 })
        {
            yield return (HttpMethod.Post, "/tasks", Text(body));
        }

        foreach (var path in new[]
                 {
                     "/tasks?limit=-5", "/tasks?offset=abc", "/tasks?limit=99999999999", "/tasks?metadata=%7Bbad", "/tasks?state=nope", "/tasks?order=sideways",
                     $"/tasks/{task}?version=-1", $"/tasks/{task}?version=abc", $"/tasks/{task}?at=yesterday", $"/tasks/{task}?at=9999-99-99T99:99:99Z",
                     $"/tasks/{task}?wait=forever", $"/tasks/{task}?wait=1s&version=1", $"/tasks/{task}/history?from=-1", $"/tasks/{task}/history?limit=abc",
                     $"/tasks/{task}/metrics?limit=0", "/tasks/%00", $"/tasks/{new string('x', 4000)}",
                     $"/proplets/{new string('p', 4000)}", "/proplets/%00/metrics?limit=abc", "/proplets?limit=-1", "/dead-letters?limit=abc",
                 })
        {
            yield return (HttpMethod.Get, path, null);
        }

        yield return (HttpMethod.Post, $"/tasks/{stranger}/start", null);
        yield return (HttpMethod.Post, $"/tasks/{stranger}/stop", null);
        yield return (HttpMethod.Put, $"/tasks/{task}/upload", Text("not a multipart form"));
        yield return (HttpMethod.Post, "/dead-letters/not-an-id/replay", null);
        yield return (HttpMethod.Delete, $"/tasks/{stranger}", null);
        yield return (HttpMethod.Delete, "/proplets/%00", null);
    }

    /// <summary>The task ids a proplet's log shows accepted more often than ended (EdgeLog 8007 against 8008, 8009 and,
    /// for a latent task's deployment, 8074).</summary>
    private static IEnumerable<string> Unended(string log)
    {
        var open = new Dictionary<string, int>();
        foreach (System.Text.RegularExpressions.Match line in System.Text.RegularExpressions.Regex.Matches(log, @"\[(8007|8008|8009|8074)\] (?:Latent task|Task) ([0-9a-f-]{36})"))
        {
            var id = line.Groups[2].Value;
            open[id] = open.GetValueOrDefault(id) + (line.Groups[1].Value == "8007" ? 1 : -1);
        }

        return open.Where(o => o.Value > 0).Select(o => o.Key);
    }

    private static string Code(HttpStatusCode? status) => status is null ? "-" : ((int)status).ToString(System.Globalization.CultureInfo.InvariantCulture);

    private static Task<(HttpStatusCode? Status, string Text)> SendAsync(HttpClient http, HttpMethod method, string path, object? body, string? user = null) =>
        SendRawAsync(http, method, path, body is null ? null : JsonSerializer.SerializeToUtf8Bytes(body, JsonSerializerOptions.Web), user);

    /// <summary>Sends <paramref name="body"/> as it is, labelled application/json.</summary>
    private static async Task<(HttpStatusCode? Status, string Text)> SendRawAsync(HttpClient http, HttpMethod method, string path, byte[]? body, string? user = null)
    {
        try
        {
            using var request = new HttpRequestMessage(method, path);
            if (user is not null)
            {
                request.Headers.Add("X-User-Id", user);
            }

            if (body is not null)
            {
                request.Content = new ByteArrayContent(body);
                request.Content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/json");
            }

            using var response = await http.SendAsync(request, Ct);
            return (response.StatusCode, await response.Content.ReadAsStringAsync(Ct));
        }
        catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException && !Ct.IsCancellationRequested)
        {
            return (null, ""); // no answer (refused, reset, or none within the client's timeout): maybe applied
        }
    }

    /// <summary>The proplets' relays to the broker, by proplet id.</summary>
    private sealed class Links(int brokerPort) : IAsyncDisposable
    {
        private readonly Dictionary<string, TcpRelay> _relays = [];

        public TcpRelay this[string id] => _relays[id];

        /// <summary>The proplet's broker address: its relay's (made on first use).</summary>
        public Dictionary<string, string> Environment(string id)
        {
            if (!_relays.TryGetValue(id, out var relay))
            {
                _relays[id] = relay = TcpRelay.Start("127.0.0.1", brokerPort);
            }

            return new() { ["PROPLET_MQTT_ADDRESS"] = $"tcp://127.0.0.1:{relay.Port}" };
        }

        public async ValueTask DisposeAsync()
        {
            foreach (var relay in _relays.Values)
            {
                await relay.DisposeAsync();
            }
        }
    }

    private enum Kind
    {
        Work,
        Daemon,
        Latent,

        /// <summary>A work task whose module (the addition, main(n, 0)) is pulled from the registry through the proxy.</summary>
        Image,
    }

    /// <summary>What the test did to a task: its last request that succeeded, and whether one may have been applied
    /// unanswered (no response, or a 5xx: the manager killed or its database cut mid-request).</summary>
    private sealed class Tracked(string id, Kind kind, int number, string user)
    {
        public string Id { get; } = id;

        /// <summary>The client's user that created it (X-User-Id), the only one the auth plugin lets start it.</summary>
        public string User { get; } = user;

        public Kind Kind { get; } = kind;

        /// <summary>The number its result (a work or image task's) or its invocations' (a latent task's) must be; a daemon's result is empty.</summary>
        public int Number { get; } = number;

        public string? LastSucceeded { get; private set; }

        public bool Deleted { get; private set; }

        public bool Uncertain { get; private set; }

        private readonly List<string> _log = [];

        public void Note(string op, HttpStatusCode? status)
        {
            _log.Add($"{op} {(status is null ? "-" : ((int)status).ToString(System.Globalization.CultureInfo.InvariantCulture))}");
            if (op == "invoke")
            {
                return; // changes nothing about the task
            }

            if (status is null || (int)status >= 500)
            {
                Uncertain = true;
                Deleted |= op == "delete";
                return;
            }

            if ((int)status < 300)
            {
                LastSucceeded = op == "create+start" ? "start" : op;
                Deleted |= op == "delete";
            }
        }

        public override string ToString() => $"task {Id} ({Kind} #{Number}: {string.Join(", ", _log)})";
    }
}
