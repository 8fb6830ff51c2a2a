using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using MQTTnet.Protocol;
using Propeller.Application.EventStore;
using Propeller.Application.Proplets;
using Propeller.Broker;
using Propeller.Broker.Tests;
using Propeller.Domain.Proplets;

namespace Propeller.Manager.Tests.Dispatch;

/// <summary>
/// The whole manager path on real PostgreSQL and mosquitto: a simulated proplet (our MQTT client) registers, sends
/// heartbeats and answers start messages with results; tasks started over HTTP end Completed with those results.
/// </summary>
public partial class DispatchTests : IAsyncLifetime
{
    private readonly string _tenant = "t" + Guid.NewGuid().ToString("N")[..12];
    private readonly FirstDispatchFails _raceLost = new(() => new JasperFx.ConcurrencyException("a lost race, for the test"));
    private readonly BeforeFirstDispatch _beforeDispatch = new();
    private ManagerServer _server = null!;

    private string Base => $"m/{_tenant}/c/ch";

    /// <summary>The schema of this run (a subclass runs every test again in another durability mode).</summary>
    protected virtual string Schema => "api_dispatch";

    /// <summary>Settings added to the broker's (a subclass selects another durability mode).</summary>
    protected virtual IReadOnlyDictionary<string, string> Settings => new Dictionary<string, string>();

    public async ValueTask InitializeAsync() => _server = await ManagerServer.StartAsync(Schema, new Dictionary<string, string>(Settings)
    {
        ["MANAGER_MQTT_ADDRESS"] = Broker,
        ["MANAGER_TENANT_ID"] = _tenant,
        ["MANAGER_CHANNEL_ID"] = "ch",
        ["MANAGER_ENTITY_ID"] = "manager-" + _tenant,
        ["MANAGER_MQTT_QOS"] = "1",
    }, services: s =>
    {
        Marten.MartenServiceCollectionExtensions.ConfigureMarten(s, o =>
        {
            o.Listeners.Add(_raceLost);
            o.Listeners.Add(_beforeDispatch);
        });
        // The sweep is the safety net for a task placed on a proplet deleted at that moment: sooner than its 30 s here.
        s.PostConfigure<Infrastructure.Scheduling.SchedulerOptions>(o => o.IdleSweepInterval = TimeSpan.FromSeconds(2));
    });

    public async ValueTask DisposeAsync()
    {
        await _server.DisposeAsync();
        GC.SuppressFinalize(this);
    }

    private static string Broker => Environment.GetEnvironmentVariable("PROPELLER_TEST_MQTT") is { Length: > 0 } value ? value : "tcp://127.0.0.1:51883";

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private HttpClient Http => _server.Client;

    /// <summary>
    /// The broker connection stays up while the hosted services stop (Wolverine drains its broker queue then: those
    /// publishes go out) and closes once they have; from the moment the host begins to stop nothing more it receives is
    /// handled (BridgeShutdownTests), so no result reaches a batcher that would cancel it. Before session 42 it closed
    /// as the host began to stop, and the drained publishes failed.
    /// </summary>
    [Fact]
    public async Task GivenARunningManager_WhenItStops_ThenItsBrokerConnectionStaysUpWhileTheHostedServicesStop_AndClosesAfter()
    {
        var probe = new StopProbe();
        var server = await ManagerServer.StartAsync(Schema + "_stopping", new Dictionary<string, string>(Settings)
        {
            ["MANAGER_MQTT_ADDRESS"] = Broker,
            ["MANAGER_TENANT_ID"] = _tenant + "s",
            ["MANAGER_ENTITY_ID"] = "manager-" + _tenant + "s",
        }, services: s => s.AddHostedService(sp => probe.With(sp.GetRequiredService<Infrastructure.Mqtt.ManagerMqtt>())));
        probe.Mqtt.ShouldNotBeNull().Connection.IsConnected.ShouldBeTrue();

        await server.DisposeAsync();

        probe.ConnectedWhenStopped.ShouldBe(true);
        probe.Mqtt.Connection.IsConnected.ShouldBeFalse();
    }

    /// <summary>Records whether the manager's broker connection was still up when the host stopped this service.</summary>
    private sealed class StopProbe : Microsoft.Extensions.Hosting.IHostedService
    {
        public Infrastructure.Mqtt.ManagerMqtt? Mqtt { get; private set; }

        public bool? ConnectedWhenStopped { get; private set; }

        public StopProbe With(Infrastructure.Mqtt.ManagerMqtt mqtt)
        {
            Mqtt = mqtt;
            return this;
        }

        public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        public Task StopAsync(CancellationToken cancellationToken)
        {
            ConnectedWhenStopped = Mqtt?.Connection.IsConnected;
            return Task.CompletedTask;
        }
    }

    /// <summary>
    /// A batch that placed a task and then lost a race on a stream is decided again (the conflict policy): only the start
    /// message of the attempt that committed leaves, not the rolled-back attempt's as well (one dispatch per task).
    /// </summary>
    [Fact]
    public async Task GivenABatchThatPlacedATaskAndLostARace_WhenItIsDecidedAgain_ThenOnlyTheCommittedStartIsSent()
    {
        var starts = new System.Collections.Concurrent.ConcurrentQueue<string>();
        await using var watcher = new BrokerConnection(new BrokerOptions { ClientId = "watch-" + _tenant }.WithAddress(Broker))
        {
            Handler = Inbox.Each((message, _) =>
            {
                starts.Enqueue(JsonDocument.Parse(message.Payload).RootElement.GetProperty("id").GetString()!);
                return ValueTask.CompletedTask;
            }),
        };
        await watcher.StartAsync(Ct);
        await watcher.SubscribeAsync($"{Base}/control/manager/start", MqttQualityOfServiceLevel.AtLeastOnce, Ct);
        var (first, second) = (Guid.NewGuid().ToString(), Guid.NewGuid().ToString());
        await using var one = await StartPropletAsync(first, _ => "ok");
        await using var two = await StartPropletAsync(second, _ => "ok");
        await WaitForAliveAsync(first);
        await WaitForAliveAsync(second);
        _raceLost.Arm();

        var id = await CreateAndStartAsync("""{"name":"main","file":"AGFzbQEAAAABBwFgAn9/AX8DAgEABwgBBG1haW4AAAoJAQcAIAAgAWoL","inputs":[1,2]}""");

        (await WaitForStateAsync(id, 3)).GetProperty("state").GetInt32().ShouldBe(3);
        _raceLost.Fired.ShouldBeTrue();
        var history = await Http.GetFromJsonAsync<JsonElement>($"/tasks/{id}/history", Ct);
        history.ToString().ShouldNotContain("task.result_ignored"); // a second start would have brought a second result
        starts.Count(s => s == id).ShouldBe(1);
    }


    /// <summary>
    /// A broker batch with a result PostgreSQL cannot store (a NUL in its error text) beside a good one: the good one is
    /// recorded once, the bad one is dropped as malformed before it reaches PostgreSQL. Sent there, it failed the batch
    /// (22P05) and left an auto-prepared connection out of step in the pool; the next command on that connection failed
    /// ("Received unexpected backend message DataRow"), now and then the good result's own, which was then logged and
    /// acknowledged without being stored (a flake of this test under load).
    /// </summary>
    [Fact]
    public async Task GivenABrokerBatchWithAResultThatCannotBeStored_WhenItFails_ThenTheOthersAreRecordedOnce()
    {
        var propletId = Guid.NewGuid().ToString();
        await using var proplet = await StartPropletAsync(propletId, _ => throw new InvalidOperationException()); // never answers
        await WaitForAliveAsync(propletId);
        var good = await CreateAndStartAsync("""{"name":"main","file":"AGFzbQEAAAABBwFgAn9/AX8DAgEABwgBBG1haW4AAAoJAQcAIAAgAWoL"}""");
        var bad = await CreateAndStartAsync("""{"name":"main","file":"AGFzbQEAAAABBwFgAn9/AX8DAgEABwgBBG1haW4AAAoJAQcAIAAgAWoL"}""");
        (await WaitForStateAsync(good, 2)).GetProperty("state").GetInt32().ShouldBe(2);
        (await WaitForStateAsync(bad, 2)).GetProperty("state").GetInt32().ShouldBe(2);

        ReceivedMessage Result(string id, string? error) => new(
            $"{Base}/control/proplet/results",
            JsonSerializer.SerializeToUtf8Bytes(new { task_id = id, proplet_id = propletId, results = "ok", error }),
            MqttQualityOfServiceLevel.AtLeastOnce,
            Retain: false,
            Duplicate: false);
        var surrogate = Encoding.UTF8.GetBytes($$"""{"task_id":"{{bad}}","proplet_id":"{{propletId}}","results":"ok","error":"bad\udc00text"}""");
        await _server.Services.GetRequiredService<Infrastructure.Mqtt.InboundHandler>().AcceptBatchAsync(
            [Result(good, null), Result(bad, "bad\u0000text"), new($"{Base}/control/proplet/results", surrogate, MqttQualityOfServiceLevel.AtLeastOnce, Retain: false, Duplicate: false)], Ct);

        var history = (await Http.GetFromJsonAsync<JsonElement>($"/tasks/{good}/history", Ct)).EnumerateArray().Select(e => e.GetProperty("type").GetString()).ToList();
        history.ShouldBe(["task.created.v1", "task.start_requested.v1", "task.dispatched.v1", "task.completed.v1"], _server.Warnings.ToString());
        (await Http.GetFromJsonAsync<JsonElement>($"/tasks/{bad}", Ct)).GetProperty("state").GetInt32().ShouldBe(2, "a result that cannot be stored changes nothing");
        var warnings = _server.Warnings.ToString();
        warnings.ShouldContain(@"error must not contain \u0000");
        warnings.ShouldContain("error must be valid Unicode");
        warnings.ShouldNotContain("22P05", customMessage: "the value reached PostgreSQL (and could leave a pooled connection out of step)");
    }

    /// <summary>A proplet that answers every start addressed to it with <paramref name="answer"/>(inputs).</summary>
    private async Task<BrokerConnection> StartPropletAsync(string propletId, Func<JsonElement, string> answer)
    {
        BrokerConnection? client = null;
        client = new BrokerConnection(new BrokerOptions { ClientId = propletId }.WithAddress(Broker))
        {
            Handler = Inbox.Each(async (message, token) =>
            {
                var start = JsonDocument.Parse(message.Payload).RootElement;
                if (start.TryGetProperty("proplet_id", out var target) && target.GetString() != propletId)
                {
                    return;
                }

                string results;
                try
                {
                    results = answer(start);
                }
                catch (InvalidOperationException)
                {
                    return; // a proplet that never answers
                }

                var result = JsonSerializer.Serialize(new { task_id = start.GetProperty("id").GetString(), proplet_id = propletId, results, error = (string?)null });
                await client!.PublishAsync($"{Base}/control/proplet/results", Encoding.UTF8.GetBytes(result), MqttQualityOfServiceLevel.AtLeastOnce, token);
            }),
        };
        await client.StartAsync(Ct);
        await client.SubscribeAsync($"{Base}/control/manager/start", MqttQualityOfServiceLevel.AtLeastOnce, Ct);
        await PublishAsync(client, "control/proplet/create", new { proplet_id = propletId, @namespace = "default", metadata = new { hostname = "sim", total_memory_bytes = 16_777_216_000UL, tags = new[] { "sim" } } });
        await PublishAsync(client, "control/proplet/alive", new { proplet_id = propletId, status = "alive", @namespace = "default" });
        return client;
    }

    private Task PublishAsync(BrokerConnection client, string path, object payload) =>
        client.PublishAsync($"{Base}/{path}", JsonSerializer.SerializeToUtf8Bytes(payload), MqttQualityOfServiceLevel.AtLeastOnce, Ct);

    private async Task<JsonElement> WaitForStateAsync(string id, int state)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (true)
        {
            var task = await Http.GetFromJsonAsync<JsonElement>($"/tasks/{id}", Ct);
            if (task.GetProperty("state").GetInt32() == state || DateTime.UtcNow > deadline)
            {
                return task;
            }

            await Task.Delay(20, Ct);
        }
    }

    private async Task<string> CreateAndStartAsync(string body)
    {
        var created = await Http.PostAsync("/tasks", new StringContent(body, Encoding.UTF8, "application/json"), Ct);
        created.StatusCode.ShouldBe(HttpStatusCode.Created);
        var id = (await created.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("id").GetString()!;
        (await Http.PostAsync($"/tasks/{id}/start", null, Ct)).StatusCode.ShouldBe(HttpStatusCode.OK);
        return id;
    }

    [Fact]
    public async Task StartedTask_IsDispatchedToAnAliveProplet_AndCompletesWithItsResult()
    {
        var propletId = Guid.NewGuid().ToString();
        await using var proplet = await StartPropletAsync(propletId, start =>
            start.GetProperty("inputs").EnumerateArray().Sum(i => int.Parse(i.GetString()!, System.Globalization.CultureInfo.InvariantCulture)).ToString(System.Globalization.CultureInfo.InvariantCulture));
        await WaitForAliveAsync(propletId);

        var id = await CreateAndStartAsync("""{"name":"main","file":"AGFzbQEAAAABBwFgAn9/AX8DAgEABwgBBG1haW4AAAoJAQcAIAAgAWoL","inputs":[10,32]}""");

        var task = await WaitForStateAsync(id, 3);
        task.GetProperty("state").GetInt32().ShouldBe(3);
        task.GetProperty("proplet_id").GetString().ShouldBe(propletId);
        task.GetProperty("results").GetString().ShouldBe("42");
        var results = await Http.GetFromJsonAsync<JsonElement>($"/tasks/{id}/results", Ct);
        results.GetProperty("results").GetString().ShouldBe("42");
        var history = await Http.GetFromJsonAsync<JsonElement>($"/tasks/{id}/history", Ct);
        history.EnumerateArray().Select(e => e.GetProperty("type").GetString()).ShouldBe(["task.created.v1", "task.start_requested.v1", "task.dispatched.v1", "task.completed.v1"]);
        (await Http.GetFromJsonAsync<JsonElement>($"/proplets/{propletId}", Ct)).GetProperty("metadata").GetProperty("total_memory_bytes").GetUInt64().ShouldBe(16_777_216_000UL);
    }

    /// <summary>
    /// The start message carries the monitoring profile with all ten keys (spec §2.1; our proplet and the Rust one
    /// refuse a profile without them): normalised at the API, and completed for a task whose create was recorded
    /// before that, with the client's text.
    /// </summary>
    [Fact]
    public async Task TheStartMessage_CarriesTheWholeMonitoringProfile_AlsoForATaskStoredWithAPartialOne()
    {
        const string Full = """{"enabled":true,"interval":5,"collect_cpu":false,"collect_memory":false,"collect_disk_io":false,"collect_threads":false,"collect_file_descriptors":false,"export_to_mqtt":false,"retain_history":false,"history_size":0}""";
        var propletId = Guid.NewGuid().ToString();
        await using var proplet = await StartPropletAsync(propletId, start => start.GetProperty("monitoring_profile").GetRawText());
        await WaitForAliveAsync(propletId);

        var viaApi = await CreateAndStartAsync("""{"name":"main","file":"AGFzbQEAAAA=","monitoring_profile":{"enabled":true,"interval":5}}""");
        var stored = new Domain.Tasks.TaskId(Guid.CreateVersion7());
        var now = DateTimeOffset.UtcNow;
        var spec = Domain.Tasks.TaskSpec.Named("main") with { File = "AGFzbQEAAAA=", MonitoringProfile = """{"enabled":true, "interval":5}""" };
        await _server.Services.GetRequiredService<global::Wolverine.IMessageBus>().InvokeAsync<Application.Aggregates.CommandResult<Domain.Tasks.TaskEvent, Domain.Tasks.TaskState>>(
            new Manager.Wolverine.RunTaskCommand(stored, new Domain.Tasks.TaskCommand.CreateTask(stored, spec, now), EventMetadata.At(now)), Ct);
        (await Http.PostAsync($"/tasks/{stored}/start", null, Ct)).StatusCode.ShouldBe(HttpStatusCode.OK);

        (await WaitForStateAsync(viaApi, 3)).GetProperty("results").GetString().ShouldBe(Full);
        (await WaitForStateAsync(stored.ToString(), 3)).GetProperty("results").GetString().ShouldBe(Full);
        (await Http.GetFromJsonAsync<JsonElement>($"/tasks/{stored}", Ct)).GetProperty("monitoring_profile").GetRawText().ShouldBe(Full);
    }

    /// <summary>A broadcast task goes to every proplet without a proplet_id and completes with the first result, whichever
    /// proplet sends it (results were ignored as "from another proplet" and the sweep re-broadcast it as a task on a
    /// deleted proplet "broadcast").</summary>
    [Fact]
    public async Task ABroadcastTask_CompletesWithTheFirstResult_FromAnyProplet()
    {
        var propletId = Guid.NewGuid().ToString();
        await using var proplet = await StartPropletAsync(propletId, start => start.TryGetProperty("proplet_id", out _) ? "addressed" : "everyone");
        await WaitForAliveAsync(propletId);

        var id = await CreateAndStartAsync("""{"name":"main","file":"AGFzbQEAAAABBwFgAn9/AX8DAgEABwgBBG1haW4AAAoJAQcAIAAgAWoL","broadcast":true}""");

        var task = await WaitForStateAsync(id, 3);
        task.GetProperty("state").GetInt32().ShouldBe(3);
        task.GetProperty("results").GetString().ShouldBe("everyone");
        task.TryGetProperty("proplet_id", out var shown).ShouldBeFalse(shown.ToString());
        var history = await Http.GetFromJsonAsync<JsonElement>($"/tasks/{id}/history", Ct);
        history.EnumerateArray().Select(e => e.GetProperty("type").GetString()).ShouldBe(["task.created.v1", "task.start_requested.v1", "task.dispatched.v1", "task.completed.v1"]);
    }

    [Fact]
    public async Task StartWithAnAliveProplet_AppendsTheStartAndTheDispatchTogether_WithTheRequestsMetadata()
    {
        var propletId = Guid.NewGuid().ToString();
        await using var proplet = await StartPropletAsync(propletId, _ => "7");
        await WaitForAliveAsync(propletId);
        var created = await Http.PostAsync("/tasks", new StringContent("""{"name":"main","inputs":[1]}""", Encoding.UTF8, "application/json"), Ct);
        var id = (await created.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("id").GetString()!;

        using var start = new HttpRequestMessage(HttpMethod.Post, $"/tasks/{id}/start");
        start.Headers.Add("X-Correlation-Id", "corr-start-1");
        start.Headers.Add("X-User-Id", "alice");
        (await Http.SendAsync(start, Ct)).StatusCode.ShouldBe(HttpStatusCode.OK);

        // Dispatched by the start request itself: the answer to the start already shows the proplet.
        var task = await Http.GetFromJsonAsync<JsonElement>($"/tasks/{id}", Ct);
        task.GetProperty("state").GetInt32().ShouldBeOneOf(2, 3);
        task.GetProperty("proplet_id").GetString().ShouldBe(propletId);
        (await WaitForStateAsync(id, 3)).GetProperty("results").GetString().ShouldBe("7");
        var history = (await Http.GetFromJsonAsync<JsonElement>($"/tasks/{id}/history", Ct)).EnumerateArray().ToList();
        var started = history.Single(e => e.GetProperty("type").GetString() == "task.start_requested.v1");
        var dispatched = history.Single(e => e.GetProperty("type").GetString() == "task.dispatched.v1");
        dispatched.GetProperty("version").GetInt64().ShouldBe(started.GetProperty("version").GetInt64() + 1);
        dispatched.GetProperty("correlation_id").GetString().ShouldBe("corr-start-1");
        dispatched.GetProperty("user_id").GetString().ShouldBe("alice");
        dispatched.GetProperty("timestamp").GetString().ShouldBe(started.GetProperty("timestamp").GetString());
    }

    [Fact]
    public async Task ABurstOfCreatesAndStarts_SharesTransactions_YetEachTaskIsDispatchedOnce_WithItsOwnRequestsMetadata()
    {
        var propletId = Guid.NewGuid().ToString();
        await using var proplet = await StartPropletAsync(propletId, start => "result-" + start.GetProperty("id").GetString());
        await WaitForAliveAsync(propletId);

        // 24 clients at once: their commands are decided in batches (ADR 0016), so events of several requests commit
        // together; each must still carry its own request's correlation and user, and each task be dispatched once.
        async Task<string> RunAsync(int i)
        {
            using var create = new HttpRequestMessage(HttpMethod.Post, "/tasks") { Content = new StringContent($$"""{"name":"main","inputs":[{{i}}]}""", Encoding.UTF8, "application/json") };
            create.Headers.Add("X-Correlation-Id", $"burst-create-{i}");
            var created = await Http.SendAsync(create, Ct);
            created.StatusCode.ShouldBe(HttpStatusCode.Created);
            var id = (await created.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("id").GetString()!;
            using var start = new HttpRequestMessage(HttpMethod.Post, $"/tasks/{id}/start");
            start.Headers.Add("X-Correlation-Id", $"burst-start-{i}");
            start.Headers.Add("X-User-Id", $"user-{i}");
            (await Http.SendAsync(start, Ct)).StatusCode.ShouldBe(HttpStatusCode.OK);
            return id;
        }

        var ids = await Task.WhenAll(Enumerable.Range(0, 24).Select(RunAsync));
        for (var i = 0; i < ids.Length; i++)
        {
            (await WaitForStateAsync(ids[i], 3)).GetProperty("results").GetString().ShouldBe("result-" + ids[i]);
            var history = (await Http.GetFromJsonAsync<JsonElement>($"/tasks/{ids[i]}/history", Ct)).EnumerateArray().ToList();
            history.Select(e => e.GetProperty("type").GetString()).ShouldBe(["task.created.v1", "task.start_requested.v1", "task.dispatched.v1", "task.completed.v1"]);
            history[0].GetProperty("correlation_id").GetString().ShouldBe($"burst-create-{i}");
            history[2].GetProperty("correlation_id").GetString().ShouldBe($"burst-start-{i}");
            history[2].GetProperty("user_id").GetString().ShouldBe($"user-{i}");
        }
    }

    [Fact]
    public async Task AResult_IsRecordedWithItsEvents_AndARedeliveryIsRecordedAsIgnored()
    {
        var propletId = Guid.NewGuid().ToString();
        await using var proplet = await StartPropletAsync(propletId, _ => "5");
        await WaitForAliveAsync(propletId);
        var id = await CreateAndStartAsync("""{"name":"main","inputs":[1]}""");
        (await WaitForStateAsync(id, 3)).GetProperty("results").GetString().ShouldBe("5");

        // The broker delivering the same result again (after a crash before the acknowledgement, say): not applied twice.
        var again = JsonSerializer.Serialize(new { task_id = id, proplet_id = propletId, results = "5", error = (string?)null });
        await proplet.PublishAsync($"{Base}/control/proplet/results", Encoding.UTF8.GetBytes(again), MqttQualityOfServiceLevel.AtLeastOnce, Ct);
        var deadline = DateTime.UtcNow.AddSeconds(10);
        List<string?> types;
        do
        {
            await Task.Delay(50, Ct);
            types = [.. (await Http.GetFromJsonAsync<JsonElement>($"/tasks/{id}/history", Ct)).EnumerateArray().Select(e => e.GetProperty("type").GetString())];
        }
        while (!types.Contains("task.result_ignored.v1") && DateTime.UtcNow < deadline);

        types.Count(t => t == "task.completed.v1").ShouldBe(1);
        types.ShouldContain("task.result_ignored.v1");
        (await Http.GetFromJsonAsync<JsonElement>($"/tasks/{id}", Ct)).GetProperty("results").GetString().ShouldBe("5");
    }

    [Fact]
    public async Task ABurstOfResults_IsRecordedOncePerTask_EachWithItsOwnMetadata_TheDuplicateAndTheStrayIgnored()
    {
        var propletId = Guid.NewGuid().ToString();
        await using var proplet = await StartPropletAsync(propletId, _ => throw new InvalidOperationException()); // never answers
        await WaitForAliveAsync(propletId);
        var ids = new List<string>();
        for (var i = 0; i < 12; i++)
        {
            ids.Add(await CreateAndStartAsync("""{"name":"main","inputs":[1]}"""));
        }

        foreach (var id in ids)
        {
            (await WaitForStateAsync(id, 2)).GetProperty("state").GetInt32().ShouldBe(2);
        }

        // Published back to back, so they reach the manager in one or a few broker batches: every task's result, the
        // first task's again (a redelivery) and one for a task that does not exist.
        byte[] Result(string id, string results) => JsonSerializer.SerializeToUtf8Bytes(new { task_id = id, proplet_id = propletId, results, error = (string?)null });
        var burst = ids.Select((id, i) => Result(id, "r" + i)).Append(Result(ids[0], "r0")).Append(Result(Guid.NewGuid().ToString(), "stray"));
        await Task.WhenAll(burst.Select(payload => proplet.PublishAsync($"{Base}/control/proplet/results", payload, MqttQualityOfServiceLevel.AtLeastOnce, Ct)));

        for (var i = 0; i < ids.Count; i++)
        {
            (await WaitForStateAsync(ids[i], 3)).GetProperty("results").GetString().ShouldBe("r" + i);
            var history = (await Http.GetFromJsonAsync<JsonElement>($"/tasks/{ids[i]}/history", Ct)).EnumerateArray().ToList();
            var completed = history.Single(e => e.GetProperty("type").GetString() == "task.completed.v1");
            completed.GetProperty("user_id").GetString().ShouldBe("proplet:" + propletId);
            completed.GetProperty("correlation_id").GetString().ShouldBe(ids[i]);
            completed.GetProperty("causation_id").GetString()!.ShouldStartWith("results:");
        }

        var deadline = DateTime.UtcNow.AddSeconds(10);
        List<JsonElement> first;
        do
        {
            first = [.. (await Http.GetFromJsonAsync<JsonElement>($"/tasks/{ids[0]}/history", Ct)).EnumerateArray()];
        }
        while (!first.Any(e => e.GetProperty("type").GetString() == "task.result_ignored.v1") && DateTime.UtcNow < deadline && await Delay());

        first.Count(e => e.GetProperty("type").GetString() == "task.completed.v1").ShouldBe(1);
        first.ShouldContain(e => e.GetProperty("type").GetString() == "task.result_ignored.v1");
    }

    private static async Task<bool> Delay()
    {
        await Task.Delay(50, Ct);
        return true;
    }

    /// <summary>
    /// The command cache (read by long polling, which waits for an active task's end) holds a task's state while it is
    /// active only: a created task's module and an ended task's spec and results stayed in memory until 50,000 entries.
    /// </summary>
    [Fact]
    public async Task TheCommandCache_HoldsATasksStateOnlyWhileItIsActive()
    {
        var cache = _server.Services.GetRequiredService<Application.Aggregates.AggregateCache>();
        var propletId = Guid.NewGuid().ToString();
        await using var proplet = await StartPropletAsync(propletId, _ => "done");
        await WaitForAliveAsync(propletId);
        var created = await Http.PostAsync("/tasks", new StringContent("""{"name":"main","file":"AGFzbQEAAAA="}""", Encoding.UTF8, "application/json"), Ct);
        var id = (await created.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("id").GetString()!;
        var stream = $"task-{id}";
        cache.TryGet<Domain.Tasks.TaskState>(stream, out _).ShouldBeFalse();

        (await Http.PostAsync($"/tasks/{id}/start", null, Ct)).StatusCode.ShouldBe(HttpStatusCode.OK);
        (await Http.GetFromJsonAsync<JsonElement>($"/tasks/{id}?wait=30s", Ct)).GetProperty("state").GetInt32().ShouldBe(3);
        cache.TryGet<Domain.Tasks.TaskState>(stream, out _).ShouldBeFalse();
    }

    /// <summary>
    /// An active task's state is cached in the view's form: a large module as its reference. An update is allowed in any
    /// state, and a Scheduled task updated with a large module was cached with the module whole (up to 267 MB for a
    /// 100 MiB file) until its next commit, which may never come.
    /// </summary>
    [Fact]
    public async Task GivenAScheduledTask_WhenUpdatedWithALargeModule_ThenTheCommandCacheHoldsTheModulesReference()
    {
        var cache = _server.Services.GetRequiredService<Application.Aggregates.AggregateCache>();
        var id = await CreateAndStartAsync("""{"name":"waiting"}"""); // no proplet: it stays Scheduled
        (await WaitForStateAsync(id, 1)).GetProperty("state").GetInt32().ShouldBe(1);
        var module = Convert.ToBase64String(System.Security.Cryptography.RandomNumberGenerator.GetBytes(100_000));
        module.Length.ShouldBeGreaterThan(Application.Tasks.ModuleReference.InlineLimit);

        var updated = await Http.PutAsync($"/tasks/{id}", new StringContent($$"""{"file":"{{module}}"}""", Encoding.UTF8, "application/json"), Ct);

        updated.StatusCode.ShouldBe(HttpStatusCode.OK);
        cache.TryGet<Domain.Tasks.TaskState>($"task-{id}", out var cached).ShouldBeTrue();
        cached.State.Status.ShouldBe(Domain.Tasks.TaskStatus.Scheduled);
        Application.Tasks.ModuleReference.IsReference(cached.State.Spec?.File).ShouldBeTrue();
        cached.State.Spec!.File!.Length.ShouldBeLessThan(100);
    }

    [Fact]
    public async Task LongPolling_ReturnsOnceTheTaskEnded_OrAtTheTimeoutWithTheCurrentState()
    {
        var pending = await Http.PostAsync("/tasks", new StringContent("""{"name":"idle"}""", Encoding.UTF8, "application/json"), Ct);
        var idleId = (await pending.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("id").GetString();
        (await Http.GetFromJsonAsync<JsonElement>($"/tasks/{idleId}?wait=200ms", Ct)).GetProperty("state").GetInt32().ShouldBe(0);
        (await Http.GetAsync($"/tasks/{idleId}?wait=forever", Ct)).StatusCode.ShouldBe(HttpStatusCode.BadRequest);
        (await Http.GetAsync($"/tasks/{idleId}?wait=2m", Ct)).StatusCode.ShouldBe(HttpStatusCode.BadRequest);
        (await Http.GetAsync($"/tasks/{idleId}?wait=1s&version=1", Ct)).StatusCode.ShouldBe(HttpStatusCode.BadRequest);
        (await Http.GetAsync($"/tasks/{Guid.NewGuid()}?wait=1s", Ct)).StatusCode.ShouldBe(HttpStatusCode.NotFound);

        var propletId = Guid.NewGuid().ToString();
        await using var proplet = await StartPropletAsync(propletId, _ => "waited");
        await WaitForAliveAsync(propletId);
        var id = await CreateAndStartAsync("""{"name":"main"}""");
        var task = await Http.GetFromJsonAsync<JsonElement>($"/tasks/{id}?wait=30s", Ct);
        task.GetProperty("state").GetInt32().ShouldBe(3);
        task.GetProperty("results").GetString().ShouldBe("waited");
    }

    [Fact]
    public async Task MetricsFromProplets_AreStored_AndListedNewestFirst_MalformedOnesDropped()
    {
        var propletId = Guid.NewGuid().ToString();
        await using var proplet = await StartPropletAsync(propletId, _ => "ok");
        await WaitForAliveAsync(propletId);
        var taskId = Guid.NewGuid().ToString();
        await PublishAsync(proplet, "control/proplet/task_metrics", new { task_id = "not-a-uuid", proplet_id = propletId, metrics = new { cpu_percent = 1.0 } });
        await PublishAsync(proplet, "control/proplet/task_metrics", new { task_id = taskId, proplet_id = 7, metrics = new { cpu_percent = 1.0 } });
        await PublishAsync(proplet, "control/proplet/task_metrics", new { task_id = taskId, proplet_id = propletId, timestamp = "2026-01-01T00:00:00Z", metrics = new { cpu_percent = 12.5, memory_bytes = 1024 } });
        await PublishAsync(proplet, "control/proplet/task_metrics", new
        {
            task_id = taskId,
            proplet_id = propletId,
            timestamp = "2026-01-01T00:00:01Z",
            metrics = new { cpu_percent = 20.0, memory_bytes = 2048 },
            aggregated = new { avg_cpu_usage = 16.25, sample_count = 2 },
        });
        await PublishAsync(proplet, "control/proplet/metrics", new
        {
            proplet_id = propletId,
            @namespace = "default",
            timestamp = new { secs_since_epoch = 1, nanos_since_epoch = 0 },
            cpu_metrics = new { user_seconds = 1.5, system_seconds = 0.5, percent = 3.0 },
            memory_metrics = new { rss_bytes = 4096 },
        });

        JsonElement taskMetrics = default;
        JsonElement propletMetrics = default;
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (DateTime.UtcNow < deadline)
        {
            taskMetrics = await Http.GetFromJsonAsync<JsonElement>($"/tasks/{taskId}/metrics", Ct);
            propletMetrics = await Http.GetFromJsonAsync<JsonElement>($"/proplets/{propletId}/metrics", Ct);
            if (taskMetrics.GetProperty("total").GetInt32() == 2 && propletMetrics.GetProperty("total").GetInt32() == 1)
            {
                break;
            }

            await Task.Delay(20, Ct);
        }

        taskMetrics.GetProperty("total").GetInt32().ShouldBe(2);
        var newest = taskMetrics.GetProperty("metrics")[0];
        newest.GetProperty("metrics").GetProperty("cpu_percent").GetDouble().ShouldBe(20.0);
        newest.GetProperty("aggregated").GetProperty("sample_count").GetInt32().ShouldBe(2);
        newest.GetProperty("proplet_id").GetString().ShouldBe(propletId);
        newest.GetProperty("timestamp").GetString().ShouldBe("2026-01-01T00:00:01Z"); // as the original writes times (spec §1.1), not +00:00
        taskMetrics.GetProperty("metrics")[1].TryGetProperty("aggregated", out _).ShouldBeFalse();
        var sample = propletMetrics.GetProperty("metrics")[0];
        sample.GetProperty("cpu_metrics").GetProperty("user_seconds").GetDouble().ShouldBe(1.5);
        sample.GetProperty("memory_metrics").GetProperty("rss_bytes").GetInt64().ShouldBe(4096);
        sample.GetProperty("namespace").GetString().ShouldBe("default");
        (DateTimeOffset.UtcNow - sample.GetProperty("timestamp").GetDateTimeOffset()).ShouldBeLessThan(TimeSpan.FromMinutes(5)); // receipt time for a non-string timestamp
        sample.GetProperty("timestamp").GetString().ShouldEndWith("Z");
        (await Http.GetFromJsonAsync<JsonElement>($"/tasks/{taskId}/metrics?offset=1&limit=1", Ct)).GetProperty("metrics").GetArrayLength().ShouldBe(1);
        (await Http.GetAsync($"/tasks/{taskId}/metrics?limit=0", Ct)).StatusCode.ShouldBe(HttpStatusCode.BadRequest);

        // Any id, as the original (spec §9.10): one that is not a UUID has no samples, an empty page (it was a 400).
        var none = await Http.GetFromJsonAsync<JsonElement>("/tasks/not-a-uuid/metrics", Ct);
        (none.GetProperty("total").GetInt64(), none.GetProperty("metrics").GetArrayLength()).ShouldBe((0L, 0));
        (await Http.GetAsync($"/proplets/{Guid.NewGuid()}/metrics", Ct)).StatusCode.ShouldBe(HttpStatusCode.NotFound);

        var sdf = await Http.GetFromJsonAsync<JsonElement>($"/proplets/{propletId}/sdf", Ct);
        sdf.GetProperty("info").GetProperty("title").GetString().ShouldStartWith("Propeller Proplet: ");
        sdf.GetProperty("info").GetProperty("title").GetString().ShouldEndWith($"({propletId})");
        sdf.GetProperty("sdfThing").GetProperty("Proplet").GetProperty("sdfAction").TryGetProperty("start_task", out _).ShouldBeTrue();
        (await Http.GetAsync($"/proplets/{Guid.NewGuid()}/sdf", Ct)).StatusCode.ShouldBe(HttpStatusCode.NotFound);
    }

    /// <summary>
    /// An invocation's env value of null goes to the proplet as "", as the original's Go decoding makes it (and as a
    /// create's env): it went as null, which our proplet refuses (500) and the Rust proplet cannot decode (no answer).
    /// </summary>
    [Fact]
    public async Task GivenAnInvocationWithANullEnvValue_WhenInvoked_ThenThePropletGetsAnEmptyString()
    {
        var propletId = Guid.NewGuid().ToString();
        await using var proplet = await StartPropletAsync(propletId, _ => throw new InvalidOperationException()); // holds the latent task
        BrokerConnection? invoked = null;
        invoked = new BrokerConnection(new BrokerOptions { ClientId = "invoked-" + propletId }.WithAddress(Broker))
        {
            Handler = Inbox.Each(async (message, token) =>
            {
                var invoke = JsonDocument.Parse(message.Payload).RootElement;
                var reply = new { task_id = invoke.GetProperty("id").GetString(), invocation_id = invoke.GetProperty("invocation_id").GetString(), results = invoke.GetProperty("env").GetRawText(), error = (string?)null };
                await invoked!.PublishAsync($"{Base}/control/proplet/invoke_results", JsonSerializer.SerializeToUtf8Bytes(reply), MqttQualityOfServiceLevel.AtLeastOnce, token);
            }),
        };
        await using var _ = invoked;
        await invoked.StartAsync(Ct);
        await invoked.SubscribeAsync($"{Base}/control/manager/invoke", MqttQualityOfServiceLevel.AtLeastOnce, Ct);
        await WaitForAliveAsync(propletId);
        var id = await CreateAndStartAsync("""{"name":"serve","latent":true,"file":"AGFzbQEAAAA="}""");
        await WaitForStateAsync(id, 2);

        using var response = await Http.PostAsync($"/tasks/{id}/invoke", new StringContent("""{"env":{"A":null,"B":"b"}}""", Encoding.UTF8, "application/json"), Ct);

        response.StatusCode.ShouldBe(HttpStatusCode.OK, await response.Content.ReadAsStringAsync(Ct));
        JsonDocument.Parse((await response.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("results").GetString()!).RootElement.GetRawText()
            .ShouldBe("""{"A":"","B":"b"}""");
    }

    /// <summary>
    /// A sample's timestamp with an offset other than Z (a proplet writing local time) is stored at its instant in UTC:
    /// Npgsql takes only offset 0 for timestamptz, and such a sample was refused and lost. A timestamp that is not RFC
    /// 3339 (a date alone, no offset) is the receipt time, as the original; it was read as some instant in UTC.
    /// </summary>
    [Fact]
    public async Task GivenMetricsWithAnOffsetOrANonRfc3339Timestamp_WhenStored_ThenTheOffsetIsKeptAsUtc_AndTheOtherIsTheReceiptTime()
    {
        var propletId = Guid.NewGuid().ToString();
        await using var proplet = await StartPropletAsync(propletId, _ => "ok");
        await WaitForAliveAsync(propletId);
        var offset = Guid.NewGuid().ToString();
        var dateOnly = Guid.NewGuid().ToString();
        await PublishAsync(proplet, "control/proplet/task_metrics", new { task_id = offset, proplet_id = propletId, timestamp = "2026-01-01T02:00:00+02:00", metrics = new { cpu_percent = 1.0 } });
        await PublishAsync(proplet, "control/proplet/task_metrics", new { task_id = dateOnly, proplet_id = propletId, timestamp = "2026-01-01", metrics = new { cpu_percent = 2.0 } });
        await PublishAsync(proplet, "control/proplet/metrics", new { proplet_id = propletId, timestamp = "2026-01-01T02:00:00+02:00", cpu_metrics = new { percent = 3.0 } });

        await WaitUntilAsync(async () =>
            (await Http.GetFromJsonAsync<JsonElement>($"/tasks/{offset}/metrics", Ct)).GetProperty("total").GetInt32() == 1
            && (await Http.GetFromJsonAsync<JsonElement>($"/tasks/{dateOnly}/metrics", Ct)).GetProperty("total").GetInt32() == 1
            && (await Http.GetFromJsonAsync<JsonElement>($"/proplets/{propletId}/metrics", Ct)).GetProperty("total").GetInt32() == 1);

        var instant = new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);
        (await Http.GetFromJsonAsync<JsonElement>($"/tasks/{offset}/metrics", Ct)).GetProperty("metrics")[0].GetProperty("timestamp").GetDateTimeOffset().ShouldBe(instant);
        (await Http.GetFromJsonAsync<JsonElement>($"/proplets/{propletId}/metrics", Ct)).GetProperty("metrics")[0].GetProperty("timestamp").GetDateTimeOffset().ShouldBe(instant);
        var received = (await Http.GetFromJsonAsync<JsonElement>($"/tasks/{dateOnly}/metrics", Ct)).GetProperty("metrics")[0].GetProperty("timestamp").GetDateTimeOffset();
        (DateTimeOffset.UtcNow - received).ShouldBeLessThan(TimeSpan.FromMinutes(5), "the receipt time for a date alone");
    }

    [Fact]
    public async Task WithoutProplets_TheTaskWaitsAndSaysWhy_ThenRunsWhenOneAppears()
    {
        var id = await CreateAndStartAsync("""{"name":"main"}""");
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (DateTime.UtcNow < deadline)
        {
            var history = await Http.GetFromJsonAsync<JsonElement>($"/tasks/{id}/history", Ct);
            if (history.EnumerateArray().Any(e => e.GetProperty("type").GetString() == "task.dispatch_deferred.v1"))
            {
                history.EnumerateArray().Last().GetProperty("data").GetProperty("reason").GetString().ShouldBe("no active proplets available");
                break;
            }

            await Task.Delay(20, Ct);
        }

        (await WaitForStateAsync(id, 1)).GetProperty("state").GetInt32().ShouldBe(1);
        var propletId = Guid.NewGuid().ToString();
        await using var proplet = await StartPropletAsync(propletId, _ => "done");

        var task = await WaitForStateAsync(id, 3);
        task.GetProperty("results").GetString().ShouldBe("done");
    }

    /// <summary>
    /// A broadcast task started with no proplet alive waits as any task does, and goes to every proplet once one is
    /// alive. Before, it was broadcast to nobody and stayed Running for ever (no proplet answered it, and it ran on no
    /// proplet whose going offline re-dispatched it).
    /// </summary>
    [Fact]
    public async Task WithoutProplets_ABroadcastTaskWaitsAndSaysWhy_ThenIsBroadcastWhenOneAppears()
    {
        var id = await CreateAndStartAsync("""{"name":"main","file":"AGFzbQEAAAABBwFgAn9/AX8DAgEABwgBBG1haW4AAAoJAQcAIAAgAWoL","broadcast":true}""");
        var waiting = await WaitForStateAsync(id, 1);
        waiting.GetProperty("state").GetInt32().ShouldBe(1, "scheduled: waiting for a proplet, not Running on none");
        var history = await Http.GetFromJsonAsync<JsonElement>($"/tasks/{id}/history", Ct);
        history.EnumerateArray().Select(e => e.GetProperty("type").GetString()).ShouldBe(["task.created.v1", "task.start_requested.v1", "task.dispatch_deferred.v1"]);
        history.EnumerateArray().Last().GetProperty("data").GetProperty("reason").GetString().ShouldBe("no active proplets available");

        var propletId = Guid.NewGuid().ToString();
        await using var proplet = await StartPropletAsync(propletId, start => start.TryGetProperty("proplet_id", out _) ? "addressed" : "everyone");

        var task = await WaitForStateAsync(id, 3);
        task.GetProperty("results").GetString().ShouldBe("everyone");
    }

    [Fact]
    public async Task MalformedPropletMessages_AreDroppedAndChangeNothing()
    {
        await using var client = new BrokerConnection(new BrokerOptions { ClientId = "bad-" + _tenant }.WithAddress(Broker));
        await client.StartAsync(Ct);
        foreach (var (path, payload) in new[] { ("control/proplet/results", "{not json"), ("control/proplet/results", """{"task_id":"nope"}"""), ("control/proplet/create", """{"proplet_id":""}"""), ("control/proplet/alive", "[]") })
        {
            await client.PublishAsync($"{Base}/{path}", Encoding.UTF8.GetBytes(payload), MqttQualityOfServiceLevel.AtLeastOnce, Ct);
        }

        var propletId = Guid.NewGuid().ToString();
        await using var proplet = await StartPropletAsync(propletId, _ => "ok");
        await WaitForAliveAsync(propletId);
        var list = await Http.GetFromJsonAsync<JsonElement>("/proplets", Ct);
        list.GetProperty("total").GetInt32().ShouldBe(1);

        // Counted by topic on /metrics (and acknowledged: the persistent session does not hold them).
        var metrics = await Http.GetStringAsync("/metrics", Ct);
        metrics.ShouldContain("mqtt_malformed_messages{topic=\"control/proplet/results\"}");
        metrics.ShouldContain("mqtt_malformed_messages{topic=\"control/proplet/alive\"}");
    }

    /// <summary>
    /// A proplet's message with a field of the wrong type is read without it, as the original manager read it (a type
    /// assertion per field it wanted): the result completes its task, the discovery registers its proplet. Before, each
    /// was dropped as malformed whole, and the task waited Running for ever.
    /// </summary>
    [Fact]
    public async Task GivenPropletMessagesWithFieldsOfTheWrongType_ThenTheyAreHandledWithoutThoseFields()
    {
        var propletId = Guid.NewGuid().ToString();
        await using var proplet = await StartPropletAsync(propletId, _ => throw new InvalidOperationException()); // never answers
        await WaitForAliveAsync(propletId);
        var id = await CreateAndStartAsync("""{"name":"main"}""");
        (await WaitForStateAsync(id, 2)).GetProperty("state").GetInt32().ShouldBe(2);

        await PublishAsync(proplet, "control/proplet/results", new { task_id = id, proplet_id = propletId, results = "done", error = (string?)null, attempt = "1", running = "no" });
        var task = await WaitForStateAsync(id, 3);
        task.GetProperty("state").GetInt32().ShouldBe(3, _server.Warnings.ToString());
        task.GetProperty("results").GetString().ShouldBe("done");

        var other = Guid.NewGuid().ToString();
        await PublishAsync(proplet, "control/proplet/create", new { proplet_id = other, @namespace = 5, metadata = new { hostname = "odd" } });
        var deadline = DateTime.UtcNow.AddSeconds(30);
        HttpResponseMessage found;
        while ((found = await Http.GetAsync($"/proplets/{other}", Ct)).StatusCode == HttpStatusCode.NotFound)
        {
            DateTime.UtcNow.ShouldBeLessThan(deadline, "the discovery was not handled");
            await Task.Delay(20, Ct);
        }

        var registered = await found.Content.ReadFromJsonAsync<JsonElement>(Ct);
        registered.GetProperty("metadata").GetProperty("hostname").GetString().ShouldBe("odd");
        var warnings = _server.Warnings.ToString();
        warnings.ShouldContain("read without them: attempt, running");
        warnings.ShouldContain("read without them: namespace");
        warnings.ShouldNotContain("Dropped a malformed message");
    }

    [Fact]
    public async Task StoppingARunningTask_SendsTheOriginalsStopMessage_AndInterruptsIt()
    {
        var propletId = Guid.NewGuid().ToString();
        var stops = System.Threading.Channels.Channel.CreateUnbounded<JsonElement>();
        await using var proplet = new BrokerConnection(new BrokerOptions { ClientId = propletId }.WithAddress(Broker))
        {
            Handler = Inbox.Each((message, _) =>
            {
                if (message.Topic.EndsWith("/control/manager/stop", StringComparison.Ordinal))
                {
                    stops.Writer.TryWrite(JsonDocument.Parse(message.Payload).RootElement.Clone());
                }

                return ValueTask.CompletedTask;
            }),
        };
        await proplet.StartAsync(Ct);
        await proplet.SubscribeAsync($"{Base}/control/manager/stop", MqttQualityOfServiceLevel.AtLeastOnce, Ct);
        await PublishAsync(proplet, "control/proplet/alive", new { proplet_id = propletId, status = "alive" });
        await WaitForAliveAsync(propletId);
        var id = await CreateAndStartAsync("""{"name":"long_running"}""");
        (await WaitForStateAsync(id, 2)).GetProperty("state").GetInt32().ShouldBe(2);

        (await Http.PostAsync($"/tasks/{id}/stop", null, Ct)).StatusCode.ShouldBe(HttpStatusCode.OK);

        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        timeout.CancelAfter(TimeSpan.FromSeconds(30));
        var stop = await stops.Reader.ReadAsync(timeout.Token);
        stop.GetProperty("id").GetString().ShouldBe(id);
        stop.GetProperty("broadcast").GetBoolean().ShouldBeFalse();
        stop.GetProperty("proplet_id").GetString().ShouldBe(propletId);
        (await Http.GetFromJsonAsync<JsonElement>($"/tasks/{id}", Ct)).GetProperty("state").GetInt32().ShouldBe(6);
    }

    /// <summary>
    /// A restart on the same proplet: the start and stop messages name their attempt, and the first run's "stopped"
    /// result, arriving after attempt 2 was dispatched (the proplet sends it before it runs the new start), is recorded
    /// as ignored instead of failing attempt 2, whose own result then completes the task.
    /// </summary>
    [Fact]
    public async Task GivenARestartedTask_WhenTheFirstRunsStoppedResultArrivesAfterTheSecondStart_ThenItIsIgnoredAndTheSecondRunsResultCompletesIt()
    {
        var propletId = Guid.NewGuid().ToString();
        var messages = System.Threading.Channels.Channel.CreateUnbounded<(string Topic, JsonElement Payload)>();
        await using var proplet = new BrokerConnection(new BrokerOptions { ClientId = propletId }.WithAddress(Broker))
        {
            Handler = Inbox.Each((message, _) =>
            {
                messages.Writer.TryWrite((message.Topic[(message.Topic.LastIndexOf('/') + 1)..], JsonDocument.Parse(message.Payload).RootElement.Clone()));
                return ValueTask.CompletedTask;
            }),
        };
        await proplet.StartAsync(Ct);
        await proplet.SubscribeAsync($"{Base}/control/manager/start", MqttQualityOfServiceLevel.AtLeastOnce, Ct);
        await proplet.SubscribeAsync($"{Base}/control/manager/stop", MqttQualityOfServiceLevel.AtLeastOnce, Ct);
        await PublishAsync(proplet, "control/proplet/alive", new { proplet_id = propletId, status = "alive" });
        await WaitForAliveAsync(propletId);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        timeout.CancelAfter(TimeSpan.FromSeconds(30));

        var id = await CreateAndStartAsync("""{"name":"long_running"}""");
        var start1 = await messages.Reader.ReadAsync(timeout.Token);
        (await Http.PostAsync($"/tasks/{id}/stop", null, Ct)).StatusCode.ShouldBe(HttpStatusCode.OK);
        var stop1 = await messages.Reader.ReadAsync(timeout.Token);
        (await Http.PostAsync($"/tasks/{id}/start", null, Ct)).StatusCode.ShouldBe(HttpStatusCode.OK);
        var start2 = await messages.Reader.ReadAsync(timeout.Token);
        (start1.Topic, start1.Payload.GetProperty("attempt").GetInt32()).ShouldBe(("start", 1));
        (stop1.Topic, stop1.Payload.GetProperty("attempt").GetInt32()).ShouldBe(("stop", 1));
        (start2.Topic, start2.Payload.GetProperty("attempt").GetInt32()).ShouldBe(("start", 2));
        (await WaitForStateAsync(id, 2)).GetProperty("state").GetInt32().ShouldBe(2);

        await PublishAsync(proplet, "control/proplet/results", new { task_id = id, proplet_id = propletId, results = "", error = $"Task {id} was stopped before completion", attempt = 1 });
        var deadline = DateTime.UtcNow.AddSeconds(10);
        List<string?> types;
        do
        {
            await Task.Delay(50, Ct);
            types = [.. (await Http.GetFromJsonAsync<JsonElement>($"/tasks/{id}/history", Ct)).EnumerateArray().Select(e => e.GetProperty("type").GetString())];
        }
        while (!types.Contains("task.result_ignored.v1") && DateTime.UtcNow < deadline);

        types.ShouldContain("task.result_ignored.v1");
        types.ShouldNotContain("task.failed.v1");
        (await Http.GetFromJsonAsync<JsonElement>($"/tasks/{id}", Ct)).GetProperty("state").GetInt32().ShouldBe(2);
        await PublishAsync(proplet, "control/proplet/results", new { task_id = id, proplet_id = propletId, results = "done", error = (string?)null, attempt = 2 });
        var task = await WaitForStateAsync(id, 3);
        task.GetProperty("state").GetInt32().ShouldBe(3);
        task.GetProperty("results").GetString().ShouldBe("done");
    }

    [Fact]
    public async Task PropletGoingOfflineMidTask_TheTaskIsRedispatchedToAnother_AndCompletes()
    {
        var first = Guid.NewGuid().ToString();
        await using var silent = await StartPropletAsync(first, _ => throw new InvalidOperationException("never answers"));
        await WaitForAliveAsync(first);
        var id = await CreateAndStartAsync("""{"name":"main"}""");
        (await WaitForStateAsync(id, 2)).GetProperty("proplet_id").GetString().ShouldBe(first);

        var second = Guid.NewGuid().ToString();
        await using var helper = await StartPropletAsync(second, _ => "rescued");
        await WaitForAliveAsync(second);
        await PublishAsync(silent, "control/proplet/alive", new { proplet_id = first, status = "offline" });

        var task = await WaitForStateAsync(id, 3);
        task.GetProperty("state").GetInt32().ShouldBe(3);
        task.GetProperty("proplet_id").GetString().ShouldBe(second);
        task.GetProperty("results").GetString().ShouldBe("rescued");
        var types = (await Http.GetFromJsonAsync<JsonElement>($"/tasks/{id}/history", Ct)).EnumerateArray().Select(e => e.GetProperty("type").GetString()).ToList();
        types.ShouldBe(["task.created.v1", "task.start_requested.v1", "task.dispatched.v1", "task.redispatch_requested.v1", "task.dispatched.v1", "task.completed.v1"]);
        (await Http.GetFromJsonAsync<JsonElement>($"/proplets/{first}", Ct)).GetProperty("alive").GetBoolean().ShouldBeFalse();
    }

    /// <summary>
    /// The embedded C proplet publishes its Last Will retained (spec §6.3): the broker hands it out again at every
    /// (re)subscribe of the manager, long after the proplet came back. Such a replay, retained, is ignored (logged and
    /// counted); before, it marked the live proplet offline and its running task was dispatched again, running twice.
    /// </summary>
    [Fact]
    public async Task GivenAnAlivePropletRunningATask_WhenARetainedLastWillIsReplayed_ThenItStaysAlive_AndTheTaskIsNotRedispatched()
    {
        var propletId = Guid.NewGuid().ToString();
        await using var proplet = await StartPropletAsync(propletId, _ => throw new InvalidOperationException("never answers"));
        await WaitForAliveAsync(propletId);
        var id = await CreateAndStartAsync("""{"name":"main"}""");
        (await WaitForStateAsync(id, 2)).GetProperty("proplet_id").GetString().ShouldBe(propletId);

        var will = JsonSerializer.SerializeToUtf8Bytes(new { status = "offline", proplet_id = propletId });
        await _server.Services.GetRequiredService<Infrastructure.Mqtt.InboundHandler>().AcceptBatchAsync(
            [new($"{Base}/control/proplet/alive", will, MqttQualityOfServiceLevel.AtLeastOnce, Retain: true, Duplicate: false)], Ct);

        var store = _server.Services.GetRequiredService<IEventStore>();
        var stream = await store.ReadStreamAsync(PropletAggregate.StreamId(new PropletId(propletId)), new StreamReadOptions(), Ct);
        stream!.Events.Select(e => e.Type).ShouldNotContain("proplet.went_offline.v1");
        (await Http.GetFromJsonAsync<JsonElement>($"/proplets/{propletId}", Ct)).GetProperty("alive").GetBoolean().ShouldBeTrue();
        var types = (await Http.GetFromJsonAsync<JsonElement>($"/tasks/{id}/history", Ct)).EnumerateArray().Select(e => e.GetProperty("type").GetString()).ToList();
        types.ShouldNotContain("task.redispatch_requested.v1");
        _server.Warnings.ToString().ShouldContain("says nothing about liveness now");
    }

    /// <summary>
    /// A proplet deleted in the moment a task is placed on it: the deletion counts no running task (the placement has
    /// not committed), and the task then runs on a proplet nobody watches any more. It is re-dispatched (by the deletion,
    /// or by the next sweep when the placement commits after it) and completes elsewhere, instead of staying Running.
    /// </summary>
    [Fact]
    public async Task GivenAPropletDeletedWhileATaskIsBeingPlacedOnIt_ThenTheTaskIsRedispatched_AndCompletesElsewhere()
    {
        var first = Guid.NewGuid().ToString();
        await using var silent = await StartPropletAsync(first, _ => throw new InvalidOperationException("never answers"));
        await WaitForAliveAsync(first);
        _beforeDispatch.Arm(async () => (await Http.DeleteAsync($"/proplets/{first}", Ct)).StatusCode.ShouldBe(HttpStatusCode.NoContent));

        var id = await CreateAndStartAsync("""{"name":"main"}""");
        await _beforeDispatch.Fired.WaitAsync(TimeSpan.FromSeconds(30), Ct);
        (await Http.GetAsync($"/proplets/{first}", Ct)).StatusCode.ShouldBe(HttpStatusCode.NotFound);

        var second = Guid.NewGuid().ToString();
        await using var helper = await StartPropletAsync(second, _ => "rescued");
        var task = await WaitForStateAsync(id, 3);
        task.GetProperty("state").GetInt32().ShouldBe(3);
        task.GetProperty("proplet_id").GetString().ShouldBe(second);
        var types = (await Http.GetFromJsonAsync<JsonElement>($"/tasks/{id}/history", Ct)).EnumerateArray().Select(e => e.GetProperty("type").GetString()).ToList();

        // The re-dispatch may come before the second proplet is registered: then it waits (deferred) until it is.
        types.Where(t => t != "task.dispatch_deferred.v1").ShouldBe(["task.created.v1", "task.start_requested.v1", "task.dispatched.v1", "task.redispatch_requested.v1", "task.dispatched.v1", "task.completed.v1"]);
        types.IndexOf("task.dispatch_deferred.v1").ShouldBeOneOf(-1, 4);
    }

    /// <summary>A Marten listener for tests: once armed, runs an action before the first commit that dispatches a task.</summary>
    private sealed class BeforeFirstDispatch : Marten.DocumentSessionListenerBase
    {
        private readonly TaskCompletionSource _fired = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private Func<Task>? _action;

        public Task Fired => _fired.Task;

        public void Arm(Func<Task> action) => Volatile.Write(ref _action, action);

        public override async Task BeforeSaveChangesAsync(Marten.IDocumentSession session, CancellationToken token)
        {
            ArgumentNullException.ThrowIfNull(session);
            if (Volatile.Read(ref _action) is not null
                && session.PendingChanges.Streams().Any(s => s.Events.Any(e => e.Data is Domain.Tasks.TaskEvent.TaskDispatched))
                && Interlocked.Exchange(ref _action, null) is { } action)
            {
                await action();
                _fired.TrySetResult();
            }
        }
    }

    /// <summary>
    /// The broker connection hands the inbound handler several batches at once (ManagerMqtt.ReceiveBatchesInFlight); a
    /// proplet's messages still take effect in arrival order across them. Offline and alive alternate, one at a time and
    /// faster than the manager commits each change, so they fill several batches; a metrics sample of the same proplet
    /// closes the run. Every message is a change in that order, so the proplet's stream holds exactly one event per
    /// message, alternating (out of order, an "alive" on a proplet still alive would change nothing, and the count falls).
    /// </summary>
    [Fact]
    public async Task GivenAPropletsOfflineAndAliveMessages_WhenTheyArriveInSeveralBatches_ThenEachTakesEffectInArrivalOrder()
    {
        var propletId = Guid.NewGuid().ToString();
        await using var proplet = await StartPropletAsync(propletId, _ => "1");
        await WaitForAliveAsync(propletId);

        const int Messages = 101;
        for (var i = 0; i < Messages; i++)
        {
            await PublishAsync(proplet, "control/proplet/alive", new { proplet_id = propletId, status = i % 2 == 0 ? "offline" : "alive" });
        }

        await PublishAsync(proplet, "control/proplet/metrics", new { proplet_id = propletId, cpu_metrics = new { percent = 1.0 }, memory_metrics = new { rss_bytes = 1 } });
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while ((await Http.GetFromJsonAsync<JsonElement>($"/proplets/{propletId}/metrics", Ct)).GetProperty("total").GetInt32() == 0 && DateTime.UtcNow < deadline)
        {
            await Task.Delay(20, Ct);
        }

        var store = _server.Services.GetRequiredService<IEventStore>();
        var stream = await store.ReadStreamAsync(PropletAggregate.StreamId(new PropletId(propletId)), new StreamReadOptions(), Ct);
        var changes = stream!.Events.Select(e => e.Type).Where(t => t is "proplet.went_offline.v1" or "proplet.came_online.v1").ToList();
        changes.ShouldBe(Enumerable.Range(0, Messages).Select(i => i % 2 == 0 ? "proplet.went_offline.v1" : "proplet.came_online.v1"));
        (await Http.GetFromJsonAsync<JsonElement>($"/proplets/{propletId}", Ct)).GetProperty("alive").GetBoolean().ShouldBeFalse("the last message said offline");
        (await Http.GetStringAsync("/metrics", Ct)).ShouldContain("mqtt_receive_wait_seconds_count");
    }

    private async Task WaitForAliveAsync(string propletId)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (DateTime.UtcNow < deadline)
        {
            var response = await Http.GetAsync($"/proplets/{propletId}", Ct);
            if (response.IsSuccessStatusCode && (await response.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("alive").GetBoolean())
            {
                return;
            }

            await Task.Delay(20, Ct);
        }

        throw new TimeoutException($"proplet {propletId} never became alive");
    }
}
