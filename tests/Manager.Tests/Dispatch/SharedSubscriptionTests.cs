using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using MQTTnet.Protocol;
using Propeller.Broker;
using Propeller.Broker.Tests;
using Propeller.Tests.Shared;

namespace Propeller.Manager.Tests.Dispatch;

/// <summary>
/// Two manager nodes on one database and the real mosquitto (MANAGER_MQTT_SHARE_GROUP, docs/operations.md): with a share
/// group (the default on MQTT 5) each result reaches one node, so a task's history holds no <c>task.result_ignored.v1</c>; without one both nodes
/// receive every result and the second records it as ignored (the contrast shows the first case is not luck).
/// </summary>
public sealed class SharedSubscriptionTests
{
    private const int Tasks = 12;

    private static string Broker => Environment.GetEnvironmentVariable("PROPELLER_TEST_MQTT") is { Length: > 0 } value ? value : "tcp://127.0.0.1:51883";

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <param name="group">MANAGER_MQTT_SHARE_GROUP; null: unset, the default group when the broker offers shared
    /// subscriptions (mosquitto does to MQTT 5 clients; MQTT 3.1.1 cannot say so, so the default is plain there).</param>
    [Theory]
    [InlineData("5", "propeller-manager", 0)]
    [InlineData("3.1.1", "propeller-manager", 0)]
    [InlineData("5", null, 0)]
    [InlineData("3.1.1", null, 1)]
    [InlineData("5", "", 1)]
    public async Task TwoNodes_RecordEachResultOnce_WhenTheyShareAGroup(string protocol, string? group, int ignoredPerTask)
    {
        var tenant = "t" + Guid.NewGuid().ToString("N")[..12];
        var baseTopic = $"m/{tenant}/c/ch";
        Dictionary<string, string> Node(string name) => NodeSettings(tenant, name, protocol, group);

        await using var a = await ManagerServer.StartAsync("api_shared_subscriptions", Node("a"));
        await using var b = await ManagerServer.StartAsync("api_shared_subscriptions", Node("b"), dropSchema: false);
        var propletId = Guid.NewGuid().ToString();
        await using var proplet = await StartPropletAsync(baseTopic, propletId);
        await EventuallyAsync("the proplet to be alive on both nodes", async () => await AliveAsync(a.Client, propletId) && await AliveAsync(b.Client, propletId));

        var ids = new List<string>();
        for (var i = 0; i < Tasks; i++)
        {
            var (creator, starter) = i % 2 == 0 ? (a.Client, b.Client) : (b.Client, a.Client);
            using var created = await creator.PostAsync("/tasks", new StringContent("""{"name":"main","inputs":[1]}""", Encoding.UTF8, "application/json"), Ct);
            created.StatusCode.ShouldBe(HttpStatusCode.Created);
            var id = (await created.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("id").GetString()!;
            using var started = await starter.PostAsync($"/tasks/{id}/start", null, Ct);
            started.StatusCode.ShouldBe(HttpStatusCode.OK);
            ids.Add(id);
        }

        await EventuallyAsync($"{Tasks} tasks to complete and show {ignoredPerTask} ignored result each", async () =>
        {
            foreach (var id in ids)
            {
                var types = await TypesAsync(a.Client, id);
                if (!types.Contains("task.completed.v1") || types.Count(t => t == "task.result_ignored.v1") < ignoredPerTask)
                {
                    return false;
                }
            }

            return true;
        });

        // With a group no node is left to record an ignored result; this pause gives a wrong delivery the time to show.
        await Task.Delay(TimeSpan.FromSeconds(2), Ct);
        foreach (var id in ids)
        {
            var types = await TypesAsync(b.Client, id);
            types.Count(t => t == "task.completed.v1").ShouldBe(1, $"task {id}");
            types.Count(t => t == "task.result_ignored.v1").ShouldBe(ignoredPerTask, $"task {id}: {string.Join(", ", types)}");
        }
    }

    /// <summary>
    /// A node that stopped (and is not started again) keeps its persistent session, and mosquitto keeps giving that
    /// session its turn of the group's results: without recovery about every second task here would stay Running. The
    /// other node recovers the session once it was not marked alive for MANAGER_NODE_STALE_TIMEOUT (Mqtt.SessionRecovery):
    /// every task completes, the recovered messages show in /metrics, and the broker no longer holds the session.
    /// </summary>
    [Theory]
    [InlineData("5")]
    [InlineData("3.1.1")]
    public async Task AStoppedNodesSession_IsRecoveredByTheLiveNode_SoItsShareOfTheResultsIsHandled(string protocol)
    {
        var tenant = "t" + Guid.NewGuid().ToString("N")[..12];
        var baseTopic = $"m/{tenant}/c/ch";
        Dictionary<string, string> Node(string name)
        {
            var settings = NodeSettings(tenant, name, protocol, "propeller-manager");
            settings["MANAGER_NODE_STALE_TIMEOUT"] = "2s";
            return settings;
        }

        var a = await ManagerServer.StartAsync("api_session_recovery", Node("a"));
        await using var b = await ManagerServer.StartAsync("api_session_recovery", Node("b"), dropSchema: false);
        var propletId = Guid.NewGuid().ToString();
        await using var proplet = await StartPropletAsync(baseTopic, propletId);
        await EventuallyAsync("the proplet to be alive on both nodes", async () => await AliveAsync(a.Client, propletId) && await AliveAsync(b.Client, propletId));
        await a.DisposeAsync();

        var ids = new List<string>();
        for (var i = 0; i < Tasks; i++)
        {
            using var created = await b.Client.PostAsync("/tasks", new StringContent("""{"name":"main","inputs":[1]}""", Encoding.UTF8, "application/json"), Ct);
            var id = (await created.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("id").GetString()!;
            using var started = await b.Client.PostAsync($"/tasks/{id}/start", null, Ct);
            started.StatusCode.ShouldBe(HttpStatusCode.OK);
            ids.Add(id);
        }

        await EventuallyAsync($"{Tasks} tasks to complete on the live node", async () =>
        {
            foreach (var id in ids)
            {
                if (!(await TypesAsync(b.Client, id)).Contains("task.completed.v1"))
                {
                    return false;
                }
            }

            return true;
        });

        await EventuallyAsync("the stopped node's session to be recovered", async () => MetricValue(await b.Client.GetStringAsync("/metrics", Ct), "mqtt_sessions_recovered") >= 1);
        var metrics = await b.Client.GetStringAsync("/metrics", Ct);
        TestContext.Current.TestOutputHelper?.WriteLine($"recovered messages: {MetricValue(metrics, "mqtt_session_messages_recovered")}");
        MetricValue(metrics, "mqtt_session_messages_recovered").ShouldBeGreaterThan(0, "the stopped node's session held some of the results");

        // The broker dropped the session (MQTT 5: one second after the recovery's DISCONNECT): connecting under the
        // stopped node's id finds none. A probe takes over a session it finds, so it connects once, after a canary
        // session ended the same way later has been dropped (the broker's expiry has caught up with the recovered one).
        BrokerOptions.TryParseProtocolVersion(protocol, out var version).ShouldBeTrue();
        await BrokerCaughtUpAsync(tenant, version);
        await using var probe = Probe($"manager-{tenant}-a", version, out var present);
        await probe.StartAsync(Ct);
        (await present.WaitAsync(TimeSpan.FromSeconds(10), Ct)).ShouldBeFalse("the recovered session was ended");
        await probe.EndSessionAsync(Ct);
    }

    /// <summary>
    /// Waits (30 s at most) until a canary session, ended as a recovery ends one (<see cref="BrokerConnection.EndSessionAsync"/>)
    /// after the recovery did, is no longer held by the broker: each canary is probed once (a probe that finds it takes it
    /// over), then a new one is tried.
    /// </summary>
    private static async Task BrokerCaughtUpAsync(string tenant, MQTTnet.Formatter.MqttProtocolVersion version)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        for (var round = 0; ; round++)
        {
            var id = $"canary-{tenant}-{round}";
            await using (var canary = Probe(id, version, out _))
            {
                await canary.StartAsync(Ct);
                (await canary.EndSessionAsync(Ct)).ShouldBeTrue("the canary's session ended");
            }

            await Task.Delay(TimeSpan.FromSeconds(1.5), Ct); // its expiry is one second
            bool held;
            await using (var probe = Probe(id, version, out var present))
            {
                await probe.StartAsync(Ct);
                held = await present.WaitAsync(TimeSpan.FromSeconds(10), Ct);
                await probe.EndSessionAsync(Ct);
            }

            if (!held)
            {
                return;
            }

            DateTime.UtcNow.ShouldBeLessThan(deadline, "the broker still held a session ended 1 s before, after 30 s");
        }
    }

    /// <summary>A connection resuming <paramref name="clientId"/>'s session (60 s expiry); <paramref name="present"/>:
    /// whether the broker held it.</summary>
    private static BrokerConnection Probe(string clientId, MQTTnet.Formatter.MqttProtocolVersion version, out Task<bool> present)
    {
        var found = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
        present = found.Task;
        return new BrokerConnection(new BrokerOptions
        {
            ClientId = clientId,
            CleanStart = false,
            ProtocolVersion = version,
            SessionExpiryInterval = 60,
        }.WithAddress(Broker))
        {
            Connected = (sessionPresent, _) =>
            {
                found.TrySetResult(sessionPresent);
                return Task.CompletedTask;
            },
        };
    }

    /// <summary>
    /// A recovery that cannot drain the gone node's session within MANAGER's <c>SessionMaxDrain</c> (here: its handler is
    /// held up) leaves the session as it is and drains it at a later round, instead of ending it under the messages it
    /// was handling and the ones it still held (they were lost: the session is dropped a second after it ends).
    /// </summary>
    [Fact]
    public async Task ARecoveryThatCannotDrainInTime_KeepsTheSessionForALaterRound_SoNothingItHeldIsLost()
    {
        var proplets = Enumerable.Range(0, 24).Select(_ => Guid.NewGuid().ToString()).ToList();
        var tenant = "t" + Guid.NewGuid().ToString("N")[..12];
        var baseTopic = $"m/{tenant}/c/ch";
        Dictionary<string, string> Node(string name)
        {
            var settings = NodeSettings(tenant, name, "5", "propeller-manager");
            settings["MANAGER_NODE_STALE_TIMEOUT"] = "2s";
            return settings;
        }

        var held = new HoldRegistrations();
        var a = await ManagerServer.StartAsync("api_session_drain_cut", Node("a"));
        await using var b = await ManagerServer.StartAsync("api_session_drain_cut", Node("b"), dropSchema: false, services: s =>
        {
            Marten.MartenServiceCollectionExtensions.ConfigureMarten(s, o => o.Listeners.Add(held));
            s.PostConfigure<Infrastructure.Mqtt.MqttBridgeOptions>(o => o.SessionMaxDrain = TimeSpan.FromSeconds(1));
        });
        await a.DisposeAsync();

        await PublishDiscoveriesAsync(tenant, baseTopic, proplets); // shared: the broker gives the stopped node's session its turn of these

        // Registrations wait past the stale timeout and several drain limits: each recovery round is cut while handling.
        await Task.Delay(TimeSpan.FromSeconds(6), Ct);
        held.Release();

        await WaitForRegisteredAsync(b.Client, proplets);
        await EventuallyAsync("the stopped node's session to be recovered", async () => MetricValue(await b.Client.GetStringAsync("/metrics", Ct), "mqtt_sessions_recovered") >= 1);
    }

    /// <summary>
    /// The borrowed connection of a recovery is lost mid-drain, not to the gone node coming back (here: the network
    /// between the recovering node and the broker is cut): the claim lapses two mark intervals later and a later round
    /// drains the rest. Before, the claim was kept as if the gone node had taken its session back, and what the session
    /// still held waited for the claim timeout (3 minutes).
    /// </summary>
    [Fact]
    public async Task ARecoveryWhoseConnectionIsLost_IsTakenUpAgainSoon_NotAfterTheClaimTimeout()
    {
        var proplets = Enumerable.Range(0, 12).Select(_ => Guid.NewGuid().ToString()).ToList();
        var tenant = "t" + Guid.NewGuid().ToString("N")[..12];
        var baseTopic = $"m/{tenant}/c/ch";
        var address = new Uri(Broker);
        await using var network = TcpRelay.Start(address.Host, address.Port);
        Dictionary<string, string> Node(string name, string broker)
        {
            var settings = NodeSettings(tenant, name, "5", "propeller-manager");
            settings["MANAGER_NODE_STALE_TIMEOUT"] = "2s";
            settings["MANAGER_MQTT_ADDRESS"] = broker;
            return settings;
        }

        var held = new HoldRegistrations();
        var a = await ManagerServer.StartAsync("api_session_lost", Node("a", Broker));
        await using var b = await ManagerServer.StartAsync("api_session_lost", Node("b", $"tcp://127.0.0.1:{network.Port}"), dropSchema: false, services: s =>
            Marten.MartenServiceCollectionExtensions.ConfigureMarten(s, o => o.Listeners.Add(held)));
        await a.DisposeAsync();

        await PublishDiscoveriesAsync(tenant, baseTopic, proplets); // shared: the broker gives the stopped node's session its turn of these

        // Past the stale timeout: b claims a's session and its handler holds the first registrations it drains.
        var database = b.Services.GetRequiredService<Npgsql.NpgsqlDataSource>();
        await EventuallyAsync("b to claim a's session", async () =>
        {
            await using var claimed = database.CreateCommand($"select count(*) from api_session_lost.mqtt_sessions where client_id = 'manager-{tenant}-a' and claimed_by = 'manager-{tenant}-b'");
            return (long)(await claimed.ExecuteScalarAsync(Ct))! == 1;
        });
        await Task.Delay(TimeSpan.FromSeconds(1), Ct);
        network.Cut();
        await Task.Delay(TimeSpan.FromSeconds(1), Ct);
        await network.RestoreAsync();
        held.Release();

        await WaitForRegisteredAsync(b.Client, proplets);
        await EventuallyAsync("the stopped node's session to be recovered", async () => MetricValue(await b.Client.GetStringAsync("/metrics", Ct), "mqtt_sessions_recovered") >= 1);
    }

    /// <summary>
    /// The borrowed connection of a drained session is lost just before the session is ended (here: the network between
    /// the recovering node and the broker is cut then), so the end is not sent: the claim lapses two mark intervals later,
    /// as when the connection is lost while draining, and a later round ends the session. Before, the claim was kept for
    /// the claim timeout (3 minutes), and the session with it.
    /// </summary>
    [Fact]
    public async Task ARecoveryWhoseConnectionIsLostBeforeTheSessionIsEnded_IsTakenUpAgainSoon_NotAfterTheClaimTimeout()
    {
        var tenant = "t" + Guid.NewGuid().ToString("N")[..12];
        var address = new Uri(Broker);
        await using var network = TcpRelay.Start(address.Host, address.Port);
        Dictionary<string, string> Node(string name, string broker)
        {
            var settings = NodeSettings(tenant, name, "5", "propeller-manager");
            settings["MANAGER_NODE_STALE_TIMEOUT"] = "2s";
            settings["MANAGER_MQTT_ADDRESS"] = broker;
            return settings;
        }

        var a = await ManagerServer.StartAsync("api_session_end_lost", Node("a", Broker));
        await using var b = await ManagerServer.StartAsync("api_session_end_lost", Node("b", $"tcp://127.0.0.1:{network.Port}"), dropSchema: false);
        var cut = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var once = 0;
        b.Services.GetServices<Microsoft.Extensions.Hosting.IHostedService>().OfType<Infrastructure.Mqtt.SessionRecovery>().Single().BeforeEndSession = async connection =>
        {
            if (Interlocked.Exchange(ref once, 1) == 1)
            {
                return;
            }

            network.Cut();
            while (connection.IsConnected)
            {
                await Task.Delay(10, Ct);
            }

            await network.RestoreAsync();
            cut.TrySetResult();
        };
        await a.DisposeAsync();

        await cut.Task.WaitAsync(TimeSpan.FromSeconds(60), Ct);
        var database = b.Services.GetRequiredService<Npgsql.NpgsqlDataSource>();
        await EventuallyAsync("a's session to be recovered (its row deleted)", async () =>
        {
            await using var left = database.CreateCommand($"select count(*) from api_session_end_lost.mqtt_sessions where client_id = 'manager-{tenant}-a'");
            return (long)(await left.ExecuteScalarAsync(Ct))! == 0;
        });
    }

    /// <summary>
    /// A node recovering a gone node's session keeps marking its own session alive while the drain lasts (here held past
    /// the stale timeout, 2 s, for 5 s; a drain may last SessionMaxDrain, several back to back). Before, its marks waited
    /// for the recovery: a third node took it for gone, claimed its session and took it from its live connection (a
    /// reconnect, its Last Will, and what was published for it in between lost).
    /// </summary>
    [Fact]
    public async Task ANodeRecoveringASession_KeepsMarkingItsOwnSessionAlive()
    {
        var proplets = Enumerable.Range(0, 12).Select(_ => Guid.NewGuid().ToString()).ToList();
        var tenant = "t" + Guid.NewGuid().ToString("N")[..12];
        Dictionary<string, string> Node(string name)
        {
            var settings = NodeSettings(tenant, name, "5", "propeller-manager");
            settings["MANAGER_NODE_STALE_TIMEOUT"] = "2s";
            return settings;
        }

        var held = new HoldRegistrations();
        var a = await ManagerServer.StartAsync("api_session_marks", Node("a"));
        await using var b = await ManagerServer.StartAsync("api_session_marks", Node("b"), dropSchema: false, services: s =>
            Marten.MartenServiceCollectionExtensions.ConfigureMarten(s, o => o.Listeners.Add(held)));
        await a.DisposeAsync();
        await PublishDiscoveriesAsync(tenant, $"m/{tenant}/c/ch", proplets);

        var database = b.Services.GetRequiredService<Npgsql.NpgsqlDataSource>();
        async Task<double> ScalarAsync(string sql)
        {
            await using var command = database.CreateCommand(sql);
            return Convert.ToDouble(await command.ExecuteScalarAsync(Ct), System.Globalization.CultureInfo.InvariantCulture);
        }

        await EventuallyAsync("b to claim a's session", async () =>
            await ScalarAsync($"select count(*) from api_session_marks.mqtt_sessions where client_id = 'manager-{tenant}-a' and claimed_by = 'manager-{tenant}-b'") == 1);
        var ages = new List<double>();
        for (var i = 0; i < 10; i++)
        {
            await Task.Delay(TimeSpan.FromMilliseconds(500), Ct);
            ages.Add(await ScalarAsync($"select extract(epoch from now() - seen) from api_session_marks.mqtt_sessions where client_id = 'manager-{tenant}-b'"));
        }

        held.Release();
        ages.ShouldAllBe(age => age < 2, $"b's own session unmarked while it recovered a's (seconds since its mark: {string.Join(", ", ages)})");
        await WaitForRegisteredAsync(b.Client, proplets);
        await EventuallyAsync("the stopped node's session to be recovered", async () => MetricValue(await b.Client.GetStringAsync("/metrics", Ct), "mqtt_sessions_recovered") >= 1);
    }

    /// <summary>
    /// A proplet publishes its last result and goes away: with a share group the result may be given to one node while
    /// the other handles the proplet's Last Will (every node receives it) first. The will's re-dispatch waits
    /// MANAGER_OFFLINE_REDISPATCH_DELAY (6 s here), so the result, decided within it (held here for two seconds on
    /// whichever node got it, while the sweep runs), completes the task and it is not run again. Re-dispatched at once,
    /// the task went back to waiting and the result was recorded as ignored: the task would have run a second time.
    /// </summary>
    [Fact]
    public async Task AResultOnOneNodeAndTheLastWillOnTheOther_TheTaskCompletesAndIsNotRunAgain()
    {
        var tenant = "t" + Guid.NewGuid().ToString("N")[..12];
        var baseTopic = $"m/{tenant}/c/ch";
        Dictionary<string, string> Node(string name)
        {
            var settings = NodeSettings(tenant, name, "5", "propeller-manager");
            settings["MANAGER_OFFLINE_REDISPATCH_DELAY"] = "6s"; // room for a slow machine between the will and the result
            return settings;
        }

        await using var a = await ManagerServer.StartAsync("api_will_across_nodes", Node("a"));
        await using var b = await ManagerServer.StartAsync("api_will_across_nodes", Node("b"), dropSchema: false);
        var propletId = Guid.NewGuid().ToString();
        var starts = System.Threading.Channels.Channel.CreateUnbounded<string>();
        await using var proplet = await StartPropletAsync(baseTopic, propletId, starts);
        await EventuallyAsync("the proplet to be alive on both nodes", async () => await AliveAsync(a.Client, propletId) && await AliveAsync(b.Client, propletId));

        using var created = await a.Client.PostAsync("/tasks", new StringContent("""{"name":"main","inputs":[1]}""", Encoding.UTF8, "application/json"), Ct);
        var id = (await created.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("id").GetString()!;
        using var started = await a.Client.PostAsync($"/tasks/{id}/start", null, Ct);
        started.StatusCode.ShouldBe(HttpStatusCode.OK);
        (await starts.Reader.ReadAsync(Ct).AsTask().WaitAsync(TimeSpan.FromSeconds(30), Ct)).ShouldBe(id);

        var held = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        foreach (var node in new[] { a, b })
        {
            node.Services.GetRequiredService<Infrastructure.Mqtt.InboundHandler>().ResultsHook = async results =>
            {
                if (results.Any(r => r.TaskId == Guid.Parse(id)))
                {
                    held.TrySetResult();
                    await release.Task.WaitAsync(TimeSpan.FromSeconds(20), Ct);
                }
            };
        }

        await proplet.PublishAsync(
            $"{baseTopic}/control/proplet/results", JsonSerializer.SerializeToUtf8Bytes(new { task_id = id, proplet_id = propletId, results = "1", error = (string?)null }),
            MqttQualityOfServiceLevel.AtLeastOnce, Ct);
        await held.Task.WaitAsync(TimeSpan.FromSeconds(20), Ct);
        await proplet.PublishAsync(
            $"{baseTopic}/control/proplet/alive", JsonSerializer.SerializeToUtf8Bytes(new { proplet_id = propletId, status = "offline" }), MqttQualityOfServiceLevel.AtLeastOnce, Ct);
        await EventuallyAsync("the proplet marked offline by the node without the result", async () => !await AliveAsync(a.Client, propletId));

        // A task waiting for a proplet keeps the sweep looking every second: it too leaves the offline proplet's tasks
        // alone for the delay.
        using var other = await b.Client.PostAsync("/tasks", new StringContent("""{"name":"main","inputs":[2]}""", Encoding.UTF8, "application/json"), Ct);
        using var waiting = await b.Client.PostAsync($"/tasks/{(await other.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("id").GetString()}/start", null, Ct);
        waiting.StatusCode.ShouldBe(HttpStatusCode.OK);
        await Task.Delay(2000, Ct);
        release.SetResult();

        await EventuallyAsync("the result to be decided", async () => (await TypesAsync(a.Client, id)) is var types && (types.Contains("task.completed.v1") || types.Contains("task.result_ignored.v1")));
        await Task.Delay(TimeSpan.FromSeconds(5.5), Ct); // past the delay (from the will) and the scheduled message's polling
        (await TypesAsync(b.Client, id)).ShouldBe(["task.created.v1", "task.start_requested.v1", "task.dispatched.v1", "task.completed.v1"]);
        (await a.Client.GetFromJsonAsync<JsonElement>($"/tasks/{id}", Ct)).GetProperty("state").GetInt32().ShouldBe(3);
    }

    /// <summary>Holds every commit that registers a proplet until released (a commit whose token is cancelled meanwhile
    /// fails, as one cut off by a lost database would).</summary>
    private sealed class HoldRegistrations : Marten.DocumentSessionListenerBase
    {
        private readonly TaskCompletionSource _released = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public void Release() => _released.TrySetResult();

        public override Task BeforeSaveChangesAsync(Marten.IDocumentSession session, CancellationToken token)
        {
            ArgumentNullException.ThrowIfNull(session);
            return session.PendingChanges.Streams().Any(s => s.Events.Any(e => e.Data is Domain.Proplets.PropletEvent.PropletRegistered))
                ? _released.Task.WaitAsync(token)
                : Task.CompletedTask;
        }
    }

    /// <summary>A node of the tenant's deployment: its entity id, QoS 1, the protocol; <paramref name="group"/> null leaves
    /// MANAGER_MQTT_SHARE_GROUP unset.</summary>
    private static Dictionary<string, string> NodeSettings(string tenant, string name, string protocol, string? group)
    {
        var settings = new Dictionary<string, string>
        {
            ["MANAGER_MQTT_ADDRESS"] = Broker,
            ["MANAGER_TENANT_ID"] = tenant,
            ["MANAGER_CHANNEL_ID"] = "ch",
            ["MANAGER_ENTITY_ID"] = $"manager-{tenant}-{name}",
            ["MANAGER_MQTT_QOS"] = "1",
            ["MANAGER_MQTT_PROTOCOL_VERSION"] = protocol,
        };
        if (group is not null)
        {
            settings["MANAGER_MQTT_SHARE_GROUP"] = group;
        }

        return settings;
    }

    /// <summary>The value of an unlabelled series in Prometheus text (0 when absent).</summary>
    private static double MetricValue(string metrics, string name) =>
        metrics.Split('\n').Where(l => l.StartsWith(name + " ", StringComparison.Ordinal))
            .Select(l => double.Parse(l[(name.Length + 1)..], System.Globalization.CultureInfo.InvariantCulture)).DefaultIfEmpty(0).Single();

    [Fact]
    public void Filters_ShareResultsDiscoveryAndMetrics_KeepHeartbeatsAndInvocationAnswersPlain_AndNameWhatAKeptSessionMayHold()
    {
        var (shared, stale) = Propeller.Infrastructure.Mqtt.ManagerMqtt.Filters("m/t/c/ch", "nodes");
        shared.ShouldBe([
            "$share/nodes/m/t/c/ch/control/proplet/results", "$share/nodes/m/t/c/ch/control/proplet/create",
            "$share/nodes/m/t/c/ch/control/proplet/task_metrics", "$share/nodes/m/t/c/ch/control/proplet/metrics",
            "m/t/c/ch/control/proplet/alive", "m/t/c/ch/control/proplet/invoke_results"]);
        stale.ShouldContain("m/t/c/ch/#");
        stale.ShouldContain("m/t/c/ch/control/proplet/results");
        stale.ShouldContain("$share/propeller-manager/m/t/c/ch/control/proplet/results");

        var (plain, plainStale) = Propeller.Infrastructure.Mqtt.ManagerMqtt.Filters("m/t/c/ch", null);
        plain.ShouldAllBe(f => !f.StartsWith('$'));
        plainStale.ShouldNotContain("m/t/c/ch/control/proplet/results");
        plainStale.ShouldContain("$share/propeller-manager/m/t/c/ch/control/proplet/create");
    }

    /// <summary>A proplet that answers every start message with a result (it never checks the target: there is one), or
    /// with <paramref name="starts"/>, only passes each start's task id there.</summary>
    private static async Task<BrokerConnection> StartPropletAsync(string baseTopic, string propletId, System.Threading.Channels.Channel<string>? starts = null)
    {
        BrokerConnection? client = null;
        client = new BrokerConnection(new BrokerOptions { ClientId = propletId }.WithAddress(Broker))
        {
            Handler = Inbox.Each(async (message, token) =>
            {
                var taskId = JsonDocument.Parse(message.Payload).RootElement.GetProperty("id").GetString()!;
                if (starts is not null)
                {
                    await starts.Writer.WriteAsync(taskId, token);
                    return;
                }

                var result = JsonSerializer.SerializeToUtf8Bytes(new { task_id = taskId, proplet_id = propletId, results = "1", error = (string?)null });
                await client!.PublishAsync($"{baseTopic}/control/proplet/results", result, MqttQualityOfServiceLevel.AtLeastOnce, token);
            }),
        };
        await client.StartAsync(Ct);
        await client.SubscribeAsync($"{baseTopic}/control/manager/start", MqttQualityOfServiceLevel.AtLeastOnce, Ct);
        await client.PublishAsync(
            $"{baseTopic}/control/proplet/create", JsonSerializer.SerializeToUtf8Bytes(new { proplet_id = propletId, @namespace = "default" }), MqttQualityOfServiceLevel.AtLeastOnce, Ct);
        await client.PublishAsync(
            $"{baseTopic}/control/proplet/alive", JsonSerializer.SerializeToUtf8Bytes(new { proplet_id = propletId, status = "alive" }), MqttQualityOfServiceLevel.AtLeastOnce, Ct);
        return client;
    }

    private static async Task<bool> AliveAsync(HttpClient http, string propletId)
    {
        using var response = await http.GetAsync($"/proplets/{propletId}", Ct);
        return response.IsSuccessStatusCode && (await response.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("alive").GetBoolean();
    }

    private static async Task<List<string>> TypesAsync(HttpClient http, string id) =>
        [.. (await http.GetFromJsonAsync<JsonElement>($"/tasks/{id}/history", Ct)).EnumerateArray().Select(e => e.GetProperty("type").GetString()!)];

    /// <summary>Publishes a discovery of each of <paramref name="proplets"/> from a client of its own.</summary>
    private static async Task PublishDiscoveriesAsync(string tenant, string baseTopic, IEnumerable<string> proplets)
    {
        await using var sender = new BrokerConnection(new BrokerOptions { ClientId = "sender-" + tenant }.WithAddress(Broker));
        await sender.StartAsync(Ct);
        foreach (var proplet in proplets)
        {
            await sender.PublishAsync(
                $"{baseTopic}/control/proplet/create", JsonSerializer.SerializeToUtf8Bytes(new { proplet_id = proplet, @namespace = "default" }),
                MqttQualityOfServiceLevel.AtLeastOnce, Ct);
        }
    }

    private static Task WaitForRegisteredAsync(HttpClient client, IReadOnlyCollection<string> proplets) =>
        EventuallyAsync($"{proplets.Count} proplets to be registered", async () =>
        {
            foreach (var proplet in proplets)
            {
                using var response = await client.GetAsync($"/proplets/{proplet}", Ct);
                if (!response.IsSuccessStatusCode)
                {
                    return false;
                }
            }

            return true;
        });

    private static async Task EventuallyAsync(string what, Func<Task<bool>> condition)
    {
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (!await condition())
        {
            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"waited 60 s for {what}");
            }

            await Task.Delay(50, Ct);
        }
    }
}
