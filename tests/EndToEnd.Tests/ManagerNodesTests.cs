using System.Collections.Concurrent;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Npgsql;
using Propeller.Tests.Shared;

namespace Propeller.EndToEnd.Tests;

/// <summary>
/// Several manager processes on one database and one broker, and managers killed (SIGKILL) while they work, on the
/// Wolverine pipeline in its default durability mode, Balanced (ADR 0014), against simulated proplets.
/// </summary>
[Collection("e2e")]
public sealed class ManagerNodesTests
{
    private static readonly Dictionary<string, string> Wolverine = new()
    {
        ["MANAGER_MQTT_QOS"] = "1",
    };

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>
    /// A proplet's report of what it holds reaches both nodes (without a share group, discovery goes to every node): the
    /// start it lacks is sent again once, not once per node (the second node loses the race on the task's stream and
    /// decides again: sent moments ago).
    /// </summary>
    [Fact]
    public async Task TwoNodes_OneReportOfHeldTasks_TheLostStartIsSentAgainOnce()
    {
        await using var cluster = await Cluster.StartAsync("e2e_nodes_held", new Dictionary<string, string>(Wolverine) { ["MANAGER_MQTT_SHARE_GROUP"] = "" }, Ct);
        var a = cluster.Http;
        var (b, _) = await cluster.StartManagerNodeAsync("manager-b", null, Ct);
        await using var proplets = await SimulatedProplets.StartAsync(cluster.Tenant, 1, Ct);
        proplets.Hold = true; // the start is counted, never answered: the proplet "lost" it
        await cluster.WaitUntilAsync("both nodes to list the proplet as active", async () => await ActiveAsync(a) >= 1 && await ActiveAsync(b) >= 1, TimeSpan.FromSeconds(60), Ct);
        var id = await CreateAsync(a);
        await StartAsync(b, id);
        await cluster.WaitUntilAsync("the start to reach the proplet", () => Task.FromResult(proplets.Starts.GetValueOrDefault(id) == 1), TimeSpan.FromSeconds(30), Ct);
        await Task.Delay(TimeSpan.FromSeconds(6), Ct); // a start dispatched less than 5 s before a report may be on its way: not sent again

        await proplets.ReportAsync(0, [], Ct);

        await cluster.WaitUntilAsync("the start to be sent again", () => Task.FromResult(proplets.Starts.GetValueOrDefault(id) >= 2), TimeSpan.FromSeconds(30), Ct);
        await Task.Delay(TimeSpan.FromSeconds(2), Ct);
        proplets.Starts[id].ShouldBe(2);
        var types = (await cluster.HistoryAsync(id, Ct)).EnumerateArray().Select(e => e.GetProperty("type").GetString()).ToList();
        types.Count(t => t == "task.start_resent.v1").ShouldBe(1, string.Join(", ", types));
    }

    /// <param name="shareGroup">MANAGER_MQTT_SHARE_GROUP on both nodes (empty: plain subscriptions). With a group the
    /// broker keeps giving the killed node's session its turn of the results; the survivor recovers that session
    /// (Mqtt.SessionRecovery) once the node was not seen for MANAGER_NODE_STALE_TIMEOUT.</param>
    [Theory]
    [InlineData("")]
    [InlineData("propeller-manager")]
    public async Task TwoNodes_ShareTheApiAndTheWork_AndTheSurvivorFinishesAKilledNodesTasks(string shareGroup)
    {
        await using var cluster = await Cluster.StartAsync("e2e_nodes", new Dictionary<string, string>(Wolverine) { ["MANAGER_MQTT_SHARE_GROUP"] = shareGroup }, Ct);
        var a = cluster.Http;
        var (b, _) = await cluster.StartManagerNodeAsync("manager-b", null, Ct);
        await using var proplets = await SimulatedProplets.StartAsync(cluster.Tenant, 3, Ct);
        await cluster.WaitUntilAsync(
            "both nodes to list the 3 proplets as active", async () => await ActiveAsync(a) >= 3 && await ActiveAsync(b) >= 3, TimeSpan.FromSeconds(60), Ct);

        // Either node serves the API: create on one, start on the other, read on both.
        var first = await CreateAsync(a);
        await StartAsync(b, first);
        foreach (var node in new[] { a, b })
        {
            await WaitTerminalAsync(cluster, node, [first], TimeSpan.FromSeconds(60));
        }

        // Many tasks started on both nodes at once, each created on the other node.
        var ids = new ConcurrentBag<string>();
        await ParallelAsync(200, 8, async i =>
        {
            var (creator, starter) = i % 2 == 0 ? (a, b) : (b, a);
            var id = await CreateAsync(creator);
            await StartAsync(starter, id);
            ids.Add(id);
        });
        await WaitTerminalAsync(cluster, i => i % 2 == 0 ? a : b, [.. ids], TimeSpan.FromSeconds(120));

        // Kill the first node (it started first: the leader, running the projections) while it dispatches a burst of
        // starts (once 5 reached the proplets) that the proplets hold: the survivor records their results, and whatever the dead node had committed
        // but not yet published (its durable envelopes) is recovered once it is declared stale.
        proplets.Hold = true;
        var burst = new List<string>();
        for (var i = 0; i < 60; i++)
        {
            burst.Add(await CreateAsync(a));
        }

        var accepted = new ConcurrentBag<string>();
        var starting = ParallelAsync(burst.Count, 8, async i =>
        {
            try
            {
                using var response = await a.PostAsync($"/tasks/{burst[i]}/start", null, Ct);
                if (response.IsSuccessStatusCode)
                {
                    accepted.Add(burst[i]);
                }
            }
            catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException && !Ct.IsCancellationRequested)
            {
                // the node died under the request
            }
        });
        await cluster.WaitUntilAsync(
            "the proplets to receive 5 starts of the burst", () => Task.FromResult(burst.Count(proplets.Starts.ContainsKey) >= 5), TimeSpan.FromSeconds(60), Ct);
        cluster.KillManager();
        var publishedBeforeKill = burst.Count(proplets.Starts.ContainsKey);
        var leftBehind = await UnhandledEnvelopesAsync(cluster.Schema);
        await starting;
        await proplets.ReleaseAsync(Ct);

        // Its work: every task of the burst that got past Pending (certainly every accepted start) ends Completed.
        var started = new List<string>();
        foreach (var id in burst)
        {
            if ((await TaskAsync(b, id)).GetProperty("state").GetInt32() != 0 || accepted.Contains(id))
            {
                started.Add(id);
            }
        }

        started.Count.ShouldBeGreaterThanOrEqualTo(5);
        await WaitTerminalAsync(cluster, _ => b, started, TimeSpan.FromSeconds(90));
        await cluster.WaitUntilAsync(
            "no durable message left unhandled", async () => await UnhandledEnvelopesAsync(cluster.Schema) == 0, TimeSpan.FromSeconds(60), Ct);

        if (shareGroup.Length > 0)
        {
            // The killed node's session, whatever it held, was drained and ended by the survivor.
            await cluster.WaitUntilAsync(
                "the survivor to recover the killed node's broker session",
                async () => (await b.GetStringAsync("/metrics", Ct)).Split('\n').Any(l => l.StartsWith("mqtt_sessions_recovered ", StringComparison.Ordinal) && l != "mqtt_sessions_recovered 0"),
                TimeSpan.FromSeconds(60),
                Ct);
        }

        var all = ids.Append(first).Concat(started).ToList();
        var counts = await EventCountsAsync(cluster.Schema);
        foreach (var id in all)
        {
            Count(counts, id, "task.dispatched.v1").ShouldBe(1, $"task {id}: one dispatch whichever node started it");
            Count(counts, id, "task.completed.v1").ShouldBe(1, $"task {id}: one completion though both nodes received its result");
            proplets.Starts.GetValueOrDefault(id).ShouldBeGreaterThanOrEqualTo(1, $"task {id} reached a proplet");
        }

        TestContext.Current.TestOutputHelper?.WriteLine(
            $"two nodes: {all.Count} tasks, burst {burst.Count} ({accepted.Count} starts accepted, {started.Count} past Pending, {publishedBeforeKill} published before the kill, {leftBehind} durable envelopes left behind by the dead node), start messages {proplets.Starts.Values.Sum()}");
    }

    /// <summary>
    /// Both nodes lose PostgreSQL for longer than MANAGER_NODE_STALE_TIMEOUT (each then finds the other's heartbeat
    /// stale) while results arrive: once it is back, both serve the API again, every task completes, none is
    /// dispatched or completed twice, no durable message is left.
    /// </summary>
    [Fact]
    public async Task TwoNodes_WhenPostgresIsUnreachableForLongerThanTheStaleTimeout_ThenBothRecover_AndEveryTaskCompletesOnce()
    {
        var (relay, connectionString) = await TcpRelay.InFrontOfTestPostgresAsync();
        await using var relayOwned = relay;
        await using var cluster = await Cluster.StartAsync("e2e_nodes_db", new Dictionary<string, string>(Wolverine) { ["EventStore__ConnectionString"] = connectionString }, Ct);
        var a = cluster.Http;
        var (b, _) = await cluster.StartManagerNodeAsync("manager-b", null, Ct);
        await using var proplets = await SimulatedProplets.StartAsync(cluster.Tenant, 3, Ct);
        await cluster.WaitUntilAsync(
            "both nodes to list the 3 proplets as active", async () => await ActiveAsync(a) >= 3 && await ActiveAsync(b) >= 3, TimeSpan.FromSeconds(60), Ct);

        var before = new List<string>();
        for (var i = 0; i < 20; i++)
        {
            var id = await CreateAsync(i % 2 == 0 ? a : b);
            await StartAsync(i % 2 == 0 ? b : a, id);
            before.Add(id);
        }

        await WaitTerminalAsync(cluster, a, before, TimeSpan.FromSeconds(60));

        // Twenty tasks whose results the proplets hold; PostgreSQL goes away, then the results are sent.
        proplets.Hold = true;
        var during = new List<string>();
        for (var i = 0; i < 20; i++)
        {
            var id = await CreateAsync(i % 2 == 0 ? a : b);
            await StartAsync(i % 2 == 0 ? b : a, id);
            during.Add(id);
        }

        await cluster.WaitUntilAsync("the proplets to receive the 20 starts", () => Task.FromResult(during.All(proplets.Starts.ContainsKey)), TimeSpan.FromSeconds(60), Ct);
        relay.Cut();
        await proplets.ReleaseAsync(Ct);
        proplets.Hold = false;
        foreach (var node in new[] { a, b })
        {
            using var refused = await node.GetAsync("/tasks", Ct);
            refused.StatusCode.ShouldBe(HttpStatusCode.ServiceUnavailable, await refused.Content.ReadAsStringAsync(Ct));
        }

        await Task.Delay(TimeSpan.FromSeconds(15), Ct);
        await relay.RestoreAsync();

        await cluster.WaitUntilAsync(
            "both nodes to be ready again",
            async () => (await a.GetAsync("/health/ready", Ct)).IsSuccessStatusCode && (await b.GetAsync("/health/ready", Ct)).IsSuccessStatusCode,
            TimeSpan.FromSeconds(90),
            Ct);
        await WaitTerminalAsync(cluster, i => i % 2 == 0 ? a : b, during, TimeSpan.FromSeconds(90));
        var after = new List<string>();
        for (var i = 0; i < 20; i++)
        {
            var id = await CreateAsync(i % 2 == 0 ? a : b);
            await StartAsync(i % 2 == 0 ? b : a, id);
            after.Add(id);
        }

        await WaitTerminalAsync(cluster, b, after, TimeSpan.FromSeconds(60));
        await cluster.WaitUntilAsync(
            "no durable message left unhandled", async () => await UnhandledEnvelopesAsync(cluster.Schema) == 0, TimeSpan.FromSeconds(60), Ct);
        var counts = await EventCountsAsync(cluster.Schema);
        foreach (var id in before.Concat(during).Concat(after))
        {
            Count(counts, id, "task.dispatched.v1").ShouldBe(1, $"task {id}: one dispatch");
            Count(counts, id, "task.completed.v1").ShouldBe(1, $"task {id}: one completion");
        }
    }

    [Fact]
    public async Task AManagerKilledAtRandomPoints_LosesNothing_AndAppliesNothingTwice()
    {
        const int Tasks = 1000;
        const int Kills = 4;
        var seed = Environment.GetEnvironmentVariable("PROPELLER_CRASH_SEED") is { Length: > 0 } s ? int.Parse(s, System.Globalization.CultureInfo.InvariantCulture) : Random.Shared.Next();
        var random = new Random(seed);
        TestContext.Current.TestOutputHelper?.WriteLine($"crash test seed {seed} (PROPELLER_CRASH_SEED reproduces the kill points)");

        await using var cluster = await Cluster.StartAsync("e2e_crash", Wolverine, Ct);
        var http = cluster.Http;
        await using var proplets = await SimulatedProplets.StartAsync(cluster.Tenant, 3, Ct);
        await cluster.WaitUntilAsync("3 active proplets", async () => await ActiveAsync(http) >= 3, TimeSpan.FromSeconds(60), Ct);
        var ids = new string[Tasks];
        await ParallelAsync(Tasks, 8, async i => ids[i] = await CreateAsync(http));

        // Starts from 8 clients while the manager is killed and restarted at random points. A start that met a dead
        // manager may have committed before the kill, and its task may even have completed since; starting a finished
        // task runs it again (as the original does), so a careful client reads the task before sending the start again
        // and stops once it left Pending.
        var deadline = DateTime.UtcNow.AddMinutes(4);
        var starting = ParallelAsync(Tasks, 8, async i =>
        {
            for (var attempt = 0; ; attempt++)
            {
                if (DateTime.UtcNow > deadline)
                {
                    throw new TimeoutException($"task {ids[i]} could not be started within 4 minutes of kills and restarts:\n{cluster.Logs()}");
                }

                try
                {
                    if (attempt > 0 && (await TaskAsync(http, ids[i])).GetProperty("state").GetInt32() != 0)
                    {
                        return;
                    }

                    using var response = await http.PostAsync($"/tasks/{ids[i]}/start", null, Ct);
                    if ((int)response.StatusCode < 500)
                    {
                        return;
                    }
                }
                catch (HttpRequestException)
                {
                }
                catch (TaskCanceledException) when (!Ct.IsCancellationRequested)
                {
                }

                await Task.Delay(100, Ct);
            }
        });
        for (var kill = 0; kill < Kills; kill++)
        {
            await Task.Delay(TimeSpan.FromMilliseconds(random.Next(300, 2500)), Ct);
            cluster.KillManager();
            await cluster.RestartManagerAsync(Ct);
        }

        await starting;
        await WaitTerminalAsync(cluster, _ => http, ids, TimeSpan.FromSeconds(120));

        // A result delivered again (as the broker does after a crash before its acknowledgement) is recorded as ignored.
        var ignored = Count(await EventCountsAsync(cluster.Schema), ids[0], "task.result_ignored.v1");
        await proplets.SendResultAgainAsync(ids[0], Ct);
        await cluster.WaitUntilAsync(
            "the repeated result to be recorded as ignored", async () => Count(await EventCountsAsync(cluster.Schema), ids[0], "task.result_ignored.v1") > ignored, TimeSpan.FromSeconds(30), Ct);

        var counts = await EventCountsAsync(cluster.Schema);
        var missing = ids.Where(id => !proplets.Starts.ContainsKey(id)).ToList();
        missing.ShouldBeEmpty($"every task's start message reaches a proplet; {missing.Count} never did");
        var restarted = ids.Where(id => Count(counts, id, "task.start_requested.v1") != 1).ToList();
        restarted.Count.ShouldBe(0, $"one start per task; {restarted.Count} differ, e.g. {string.Join(", ", restarted.Take(5).Select(id => $"{id}: {Count(counts, id, "task.start_requested.v1")}"))}");
        var twice = ids.Where(id => Count(counts, id, "task.completed.v1") != 1).ToList();
        twice.Count.ShouldBe(0, $"one completion per task; {twice.Count} differ, e.g. {string.Join(", ", twice.Take(5).Select(id => $"{id}: {Count(counts, id, "task.completed.v1")}"))}");
        TestContext.Current.TestOutputHelper?.WriteLine(
            $"crash test: {Tasks} tasks, {Kills} kills, start messages {proplets.Starts.Values.Sum()}, results ignored {ids.Sum(id => Count(counts, id, "task.result_ignored.v1"))}, dispatches {ids.Sum(id => Count(counts, id, "task.dispatched.v1"))}");
    }

    private static int Count(Dictionary<(string, string), int> counts, string id, string type) => counts.GetValueOrDefault((id, type));

    private static async Task ParallelAsync(int count, int workers, Func<int, Task> work)
    {
        var next = -1;
        await Task.WhenAll(Enumerable.Range(0, workers).Select(_ => Task.Run(async () =>
        {
            int i;
            while ((i = Interlocked.Increment(ref next)) < count)
            {
                await work(i);
            }
        }, Ct)));
    }

    private static async Task<int> ActiveAsync(HttpClient http) =>
        (await http.GetFromJsonAsync<JsonElement>("/proplets?status=active", Ct)).GetProperty("total").GetInt32();

    private static async Task<string> CreateAsync(HttpClient http)
    {
        using var response = await http.PostAsJsonAsync("/tasks", new { name = "main", inputs = new[] { "1", "2" } }, Ct);
        var text = await response.Content.ReadAsStringAsync(Ct);
        response.StatusCode.ShouldBe(HttpStatusCode.Created, text);
        return JsonDocument.Parse(text).RootElement.GetProperty("id").GetString()!;
    }

    private static async Task StartAsync(HttpClient http, string id)
    {
        using var response = await http.PostAsync($"/tasks/{id}/start", null, Ct);
        response.IsSuccessStatusCode.ShouldBeTrue(await response.Content.ReadAsStringAsync(Ct));
    }

    private static async Task<JsonElement> TaskAsync(HttpClient http, string id) =>
        JsonDocument.Parse(await http.GetStringAsync($"/tasks/{id}", Ct)).RootElement.Clone();

    private static Task WaitTerminalAsync(Cluster cluster, HttpClient http, IReadOnlyList<string> ids, TimeSpan timeout) =>
        WaitTerminalAsync(cluster, _ => http, ids, timeout);

    /// <summary>Waits until every task is Completed, reading task i from <paramref name="node"/>(i); the failure names the others.</summary>
    private static async Task WaitTerminalAsync(Cluster cluster, Func<int, HttpClient> node, IReadOnlyList<string> ids, TimeSpan timeout)
    {
        var pending = Enumerable.Range(0, ids.Count).ToList();
        await cluster.WaitUntilAsync(
            $"{ids.Count} tasks to complete",
            async () =>
            {
                var still = new List<int>();
                foreach (var i in pending)
                {
                    if ((await TaskAsync(node(i), ids[i])).GetProperty("state").GetInt32() != 3)
                    {
                        still.Add(i);
                    }
                }

                pending = still;
                return pending.Count == 0;
            },
            timeout,
            Ct,
            () => $"{pending.Count} not completed, e.g. {string.Join(", ", pending.Take(5).Select(i => ids[i]))}");
    }

    /// <summary>Events per (task stream, type) for the types the assertions count, straight from Marten's table.</summary>
    private static async Task<Dictionary<(string, string), int>> EventCountsAsync(string schema)
    {
        await using var connection = new NpgsqlConnection(await TestPostgres.ConnectionStringAsync());
        await connection.OpenAsync(Ct);
        await using var command = new NpgsqlCommand(
            $"select stream_id::text, type, count(*)::int from \"{schema}\".mt_events where type in ('task.start_requested.v1', 'task.dispatched.v1', 'task.completed.v1', 'task.result_ignored.v1') group by 1, 2",
            connection);
        await using var reader = await command.ExecuteReaderAsync(Ct);
        var counts = new Dictionary<(string, string), int>();
        while (await reader.ReadAsync(Ct))
        {
            counts[(reader.GetString(0), reader.GetString(1))] = reader.GetInt32(2);
        }

        return counts;
    }

    /// <summary>Wolverine's durable incoming envelopes not yet handled (scheduled ones aside), whichever node owns them.</summary>
    private static async Task<long> UnhandledEnvelopesAsync(string schema)
    {
        await using var connection = new NpgsqlConnection(await TestPostgres.ConnectionStringAsync());
        await connection.OpenAsync(Ct);
        await using var command = new NpgsqlCommand($"select count(*) from \"{schema}\".wolverine_incoming_envelopes where status = 'Incoming'", connection);
        return (long)(await command.ExecuteScalarAsync(Ct))!;
    }
}
