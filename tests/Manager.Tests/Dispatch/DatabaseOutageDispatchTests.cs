using System.Collections.Concurrent;
using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using MQTTnet.Protocol;
using Propeller.Broker;
using Propeller.Broker.Tests;
using Propeller.Tests.Shared;

namespace Propeller.Manager.Tests.Dispatch;

/// <summary>
/// PostgreSQL unreachable for seconds while tasks run (a failover, a restart for an upgrade, a network cut): the
/// manager answers what it cannot do with an error, stays up, and once PostgreSQL is back finishes everything: results
/// that arrived meanwhile are recorded (the broker keeps them unacknowledged), each task dispatched and completed once.
/// </summary>
public sealed class DatabaseOutageDispatchTests
{
    private readonly string _tenant = "o" + Guid.NewGuid().ToString("N")[..12];

    private string Base => $"m/{_tenant}/c/ch";

    private static string Broker => Environment.GetEnvironmentVariable("PROPELLER_TEST_MQTT") is { Length: > 0 } value ? value : "tcp://127.0.0.1:51883";

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task GivenTasksInFlight_WhenPostgresIsUnreachableForSeconds_ThenAfterItReturnsEveryTaskCompletesOnce()
    {
        var (relay, server) = await StartBehindRelayAsync("dispatch_db_outage");
        await using var relayOwned = relay;
        await using var serverOwned = server;
        var http = server.Client;

        // A proplet that answers each start at once, or, while holding, when the test releases the held ones.
        var propletId = Guid.NewGuid().ToString();
        var starts = new ConcurrentDictionary<string, int>();
        var held = new ConcurrentQueue<string>();
        var holding = false;
        BrokerConnection? proplet = null;
        Task AnswerAsync(string id, CancellationToken token) => proplet!.PublishAsync(
            $"{Base}/control/proplet/results", JsonSerializer.SerializeToUtf8Bytes(new { task_id = id, proplet_id = propletId, results = "done " + id, error = (string?)null }),
            MqttQualityOfServiceLevel.AtLeastOnce, token);
        proplet = new BrokerConnection(new BrokerOptions { ClientId = propletId }.WithAddress(Broker))
        {
            Handler = Inbox.Each(async (message, token) =>
            {
                var id = JsonDocument.Parse(message.Payload).RootElement.GetProperty("id").GetString()!;
                starts.AddOrUpdate(id, 1, (_, n) => n + 1);
                if (Volatile.Read(ref holding))
                {
                    held.Enqueue(id);
                    return;
                }

                await AnswerAsync(id, token);
            }),
        };
        await using var _ = proplet;
        await proplet.StartAsync(Ct);
        await proplet.SubscribeAsync($"{Base}/control/manager/start", MqttQualityOfServiceLevel.AtLeastOnce, Ct);
        await PublishAsync(proplet, "control/proplet/alive", new { proplet_id = propletId, status = "alive" });
        await ManagerWaits.AliveAsync(http, propletId);

        // Before the outage: tasks run as usual.
        var before = new List<string>();
        for (var i = 0; i < 5; i++)
        {
            before.Add(await CreateAndStartAsync(http));
        }

        foreach (var id in before)
        {
            await ManagerWaits.ForStateAsync(http, id, 3);
        }

        var waiting = await CreateAsync(http);

        // Ten tasks dispatched whose results are held back, then PostgreSQL goes away and the results arrive.
        Volatile.Write(ref holding, true);
        var during = new List<string>();
        for (var i = 0; i < 10; i++)
        {
            during.Add(await CreateAndStartAsync(http));
        }

        await ManagerWaits.UntilAsync(() => Task.FromResult(during.All(starts.ContainsKey)), "the held tasks were dispatched");
        relay.Cut();
        Volatile.Write(ref holding, false);
        while (held.TryDequeue(out var id))
        {
            await AnswerAsync(id, Ct);
        }

        // What needs PostgreSQL is refused with 503 and a reason, not a hang or a crash; readiness says why.
        var ready = await http.GetAsync("/health/ready", Ct);
        ready.StatusCode.ShouldBe(HttpStatusCode.ServiceUnavailable, await ready.Content.ReadAsStringAsync(Ct));
        await ShouldBeUnavailableAsync(await http.PostAsync("/tasks", Json("""{"name":"main"}"""), Ct));
        await ShouldBeUnavailableAsync(await http.PostAsync($"/tasks/{waiting}/start", null, Ct));
        await ShouldBeUnavailableAsync(await http.GetAsync($"/tasks/{waiting}", Ct));
        await ShouldBeUnavailableAsync(await http.GetAsync("/tasks", Ct));
        await ShouldBeUnavailableAsync(await http.GetAsync("/proplets", Ct));
        await Task.Delay(TimeSpan.FromSeconds(5), Ct);

        await relay.RestoreAsync();
        await ManagerWaits.ReadyAsync(http);
        foreach (var id in during)
        {
            var task = await ManagerWaits.ForStateAsync(http, id, 3);
            task.GetProperty("results").GetString().ShouldBe("done " + id, server.Warnings.ToString());
        }

        // After the outage: the refused start and new work run, and nothing ran or completed twice.
        (await ManagerWaits.ForStateAsync(http, await StartAsync(http, waiting), 3)).GetProperty("results").GetString().ShouldBe("done " + waiting);
        var after = await CreateAndStartAsync(http);
        (await ManagerWaits.ForStateAsync(http, after, 3)).GetProperty("results").GetString().ShouldBe("done " + after);
        foreach (var id in before.Concat(during).Append(waiting).Append(after))
        {
            var types = (await http.GetFromJsonAsync<JsonElement>($"/tasks/{id}/history", Ct)).EnumerateArray().Select(e => e.GetProperty("type").GetString()).ToList();
            types.ShouldBe(["task.created.v1", "task.start_requested.v1", "task.dispatched.v1", "task.completed.v1"], $"task {id}");
        }
    }

    /// <summary>
    /// Heartbeats that arrive while PostgreSQL is unreachable cannot be recorded. A liveness check due then, handled once
    /// PostgreSQL is back, must not take the unrecorded heartbeats for silence: the proplet is not marked offline, and
    /// its running task is not dispatched a second time.
    /// </summary>
    [Fact]
    public Task GivenAProplet_WhenPostgresIsUnreachableForLongerThanTheLivenessWindow_ThenItIsNotMarkedOfflineNorItsTaskRedispatched() =>
        ThroughTroubleTheRunningTaskStaysAsync("dispatch_db_outage_liveness", async (relay, http) =>
        {
            relay.Cut();
            await Task.Delay(TimeSpan.FromSeconds(8), Ct);
            await relay.RestoreAsync();
            await ManagerWaits.ReadyAsync(http);
            await Task.Delay(TimeSpan.FromSeconds(8), Ct); // a few windows with PostgreSQL back
        });

    /// <summary>
    /// PostgreSQL slow rather than gone (each round trip 3 s, the liveness window: new connections time out, statements
    /// on open ones take seconds): heartbeats are heard but recorded late or not at all. A liveness check must not take
    /// that for silence: the proplet is not marked offline and its running task is not dispatched again.
    /// </summary>
    [Fact]
    public Task GivenAProplet_WhenPostgresIsSlowerThanTheLivenessWindow_ThenItIsNotMarkedOfflineNorItsTaskRedispatched() =>
        ThroughTroubleTheRunningTaskStaysAsync("dispatch_db_slow_liveness", async (relay, http) =>
        {
            relay.Latency = TimeSpan.FromMilliseconds(1500);
            await Task.Delay(TimeSpan.FromSeconds(12), Ct);
            relay.Latency = TimeSpan.Zero;
            await ManagerWaits.ReadyAsync(http);
            await Task.Delay(TimeSpan.FromSeconds(6), Ct); // the checks queued while slow have run
        });

    /// <summary>
    /// A proplet that heartbeats every 500 ms (liveness window 3 s) runs a task and holds it through
    /// <paramref name="trouble"/> on the way to PostgreSQL; then it answers: the task completes once, never re-dispatched,
    /// and the proplet is alive.
    /// </summary>
    private async Task ThroughTroubleTheRunningTaskStaysAsync(string schema, Func<TcpRelay, HttpClient, Task> trouble)
    {
        var (relay, server) = await StartBehindRelayAsync(schema, livenessWindow: "3s");
        await using var relayOwned = relay;
        await using var serverOwned = server;
        var http = server.Client;

        var propletId = Guid.NewGuid().ToString();
        var started = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var proplet = new BrokerConnection(new BrokerOptions { ClientId = propletId }.WithAddress(Broker))
        {
            Handler = Inbox.Each((message, _) =>
            {
                started.TrySetResult(JsonDocument.Parse(message.Payload).RootElement.GetProperty("id").GetString()!);
                return ValueTask.CompletedTask;
            }),
        };
        await proplet.StartAsync(Ct);
        await proplet.SubscribeAsync($"{Base}/control/manager/start", MqttQualityOfServiceLevel.AtLeastOnce, Ct);
        await using var heartbeats = HeartbeatLoop.Start(proplet, Base, propletId, Ct);
        await ManagerWaits.AliveAsync(http, propletId);

        var id = await CreateAndStartAsync(http);
        (await started.Task.WaitAsync(TimeSpan.FromSeconds(30), Ct)).ShouldBe(id);

        await trouble(relay, http);

        await PublishAsync(proplet, "control/proplet/results", new { task_id = id, proplet_id = propletId, results = "once", error = (string?)null });
        (await ManagerWaits.ForStateAsync(http, id, 3)).GetProperty("results").GetString().ShouldBe("once");
        var types = (await http.GetFromJsonAsync<JsonElement>($"/tasks/{id}/history", Ct)).EnumerateArray().Select(e => e.GetProperty("type").GetString()).ToList();
        types.ShouldBe(["task.created.v1", "task.start_requested.v1", "task.dispatched.v1", "task.completed.v1"], server.Warnings.ToString());
        (await http.GetFromJsonAsync<JsonElement>($"/proplets/{propletId}", Ct)).GetProperty("alive").GetBoolean().ShouldBeTrue();
    }

    /// <summary>A manager on the shared broker whose way to PostgreSQL goes through a relay the test can cut.</summary>
    private async Task<(TcpRelay Relay, ManagerServer Server)> StartBehindRelayAsync(string schema, string? livenessWindow = null)
    {
        var (relay, connectionString) = await TcpRelay.InFrontOfTestPostgresAsync();
        var settings = new Dictionary<string, string>
        {
            ["EventStore:ConnectionString"] = connectionString,
            ["MANAGER_MQTT_ADDRESS"] = Broker,
            ["MANAGER_TENANT_ID"] = _tenant,
            ["MANAGER_CHANNEL_ID"] = "ch",
            ["MANAGER_ENTITY_ID"] = "manager-" + _tenant,
            ["MANAGER_MQTT_QOS"] = "1",
        };
        if (livenessWindow is not null)
        {
            settings["MANAGER_PROPLET_LIVENESS_WINDOW"] = livenessWindow;
            settings["MANAGER_PROPLET_RECONNECT_ALLOWANCE"] = "1ms"; // silence counts at once: what the outage does is tested
        }

        return (relay, await ManagerServer.StartAsync(schema, settings));
    }

    private Task PublishAsync(BrokerConnection client, string path, object payload) =>
        client.PublishAsync($"{Base}/{path}", JsonSerializer.SerializeToUtf8Bytes(payload), MqttQualityOfServiceLevel.AtLeastOnce, Ct);

    private static StringContent Json(string body) => new(body, Encoding.UTF8, "application/json");

    private static async Task ShouldBeUnavailableAsync(HttpResponseMessage response)
    {
        var body = await response.Content.ReadAsStringAsync(Ct);
        response.StatusCode.ShouldBe(HttpStatusCode.ServiceUnavailable, $"{response.RequestMessage!.Method} {response.RequestMessage.RequestUri}: {body}");
        JsonDocument.Parse(body).RootElement.GetProperty("error").GetString().ShouldBe("the event store (PostgreSQL) is unavailable; try again later");
        response.Headers.RetryAfter.ShouldNotBeNull();
    }

    private static async Task<string> CreateAndStartAsync(HttpClient http) => await StartAsync(http, await CreateAsync(http));

    private static async Task<string> CreateAsync(HttpClient http)
    {
        var created = await http.PostAsync("/tasks", Json("""{"name":"main"}"""), Ct);
        created.StatusCode.ShouldBe(HttpStatusCode.Created, await created.Content.ReadAsStringAsync(Ct));
        return (await created.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("id").GetString()!;
    }

    private static async Task<string> StartAsync(HttpClient http, string id)
    {
        var started = await http.PostAsync($"/tasks/{id}/start", null, Ct);
        started.StatusCode.ShouldBe(HttpStatusCode.OK, await started.Content.ReadAsStringAsync(Ct));
        return id;
    }
}
