using System.Collections.Concurrent;
using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Propeller.Application.Plugins;
using MQTTnet.Protocol;
using Propeller.Broker;
using Propeller.Broker.Tests;

namespace Propeller.Manager.Tests.Plugins;

/// <summary>
/// The plugin gate in the command pipeline (spec §7.9), with a scripted gate standing in for the Wasm plugin host:
/// who is asked, with what, and what a deny or an answer does to the task and its history.
/// </summary>
public sealed class PluginGateTests : IAsyncLifetime
{
    private readonly string _tenant = "g" + Guid.NewGuid().ToString("N")[..12];
    private readonly ScriptedGate _gate = new();
    private ManagerServer _server = null!;

    private string Base => $"m/{_tenant}/c/ch";

    private static string Broker => Environment.GetEnvironmentVariable("PROPELLER_TEST_MQTT") is { Length: > 0 } value ? value : "tcp://127.0.0.1:51883";

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private HttpClient Http => _server.Client;

    public async ValueTask InitializeAsync() => _server = await ManagerServer.StartAsync(
        "api_plugins",
        new Dictionary<string, string>
        {
            ["MANAGER_MQTT_ADDRESS"] = Broker,
            ["MANAGER_TENANT_ID"] = _tenant,
            ["MANAGER_CHANNEL_ID"] = "ch",
            ["MANAGER_ENTITY_ID"] = "manager-" + _tenant,
            ["MANAGER_MQTT_QOS"] = "1",
        },
        services: s => s.AddSingleton<IPluginGate>(_gate));

    public async ValueTask DisposeAsync()
    {
        await _server.DisposeAsync();
        GC.SuppressFinalize(this);
    }

    private async Task<HttpResponseMessage> PostAsync(string path, string? body, string? user = "alice")
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = body is null ? null : new StringContent(body, Encoding.UTF8, "application/json") };
        if (user is not null)
        {
            request.Headers.Add("X-User-Id", user);
        }

        return await Http.SendAsync(request, Ct);
    }

    private async Task<string> CreateAsync(string body)
    {
        var created = await PostAsync("/tasks", body);
        created.StatusCode.ShouldBe(HttpStatusCode.Created);
        return (await created.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("id").GetString()!;
    }

    [Fact]
    public async Task CreateDenied_Is403WithTheReason_AndNothingIsStored()
    {
        _gate.Deny = (hook, _) => hook == "authorize" ? "names must not start with x" : null;

        var response = await PostAsync("/tasks", """{"name":"xray"}""");

        response.StatusCode.ShouldBe(HttpStatusCode.Forbidden);
        (await response.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("error").GetString().ShouldBe("names must not start with x");
        (await Http.GetFromJsonAsync<JsonElement>("/tasks", Ct)).GetProperty("total").GetInt32().ShouldBe(0);
        _gate.Calls.ShouldContain(c => c.Hook == "authorize" && c.Action == PluginAction.Create && c.User == "alice" && c.Task.Id == "");
    }

    [Fact]
    public async Task CreateAllowed_IsEnriched_AndTheDecisionsAreInTheHistory()
    {
        _gate.Enrich = new EnrichOutcome(new Dictionary<string, string> { ["PROPELLER_CREATED_BY"] = "alice" }, 70, ["extra"], "registry.mirror/app:1", []);

        var id = await CreateAsync("""{"name":"main","inputs":["1"]}""");

        var task = await Http.GetFromJsonAsync<JsonElement>($"/tasks/{id}", Ct);
        task.GetProperty("env").GetProperty("PROPELLER_CREATED_BY").GetString().ShouldBe("alice");
        task.GetProperty("priority").GetInt32().ShouldBe(70);
        task.GetProperty("inputs").EnumerateArray().Select(i => i.GetString()).ShouldBe(["1", "extra"]);
        task.GetProperty("image_url").GetString().ShouldBe("registry.mirror/app:1");
        var created = (await Http.GetFromJsonAsync<JsonElement>($"/tasks/{id}/history", Ct))[0];
        var decisions = JsonDocument.Parse(created.GetProperty("headers").GetProperty("plugins").GetString()!).RootElement;
        decisions.EnumerateArray().Select(d => d.GetProperty("hook").GetString()).ShouldBe(["authorize", "enrich_task"]);
        decisions[0].GetProperty("plugin").GetString().ShouldBe("scripted");
    }

    [Fact]
    public async Task StartStopDeleteDenied_Are403_AndTheTaskIsUnchanged()
    {
        var id = await CreateAsync("""{"name":"main"}""");
        _gate.Deny = (hook, action) => hook == "authorize" && action != PluginAction.Create ? $"no {action}" : null;

        (await PostAsync($"/tasks/{id}/start", null)).StatusCode.ShouldBe(HttpStatusCode.Forbidden);
        (await PostAsync($"/tasks/{id}/stop", null)).StatusCode.ShouldBe(HttpStatusCode.Forbidden);
        (await Http.DeleteAsync($"/tasks/{id}", Ct)).StatusCode.ShouldBe(HttpStatusCode.Forbidden);
        using var update = new HttpRequestMessage(HttpMethod.Put, $"/tasks/{id}") { Content = new StringContent("""{"name":"renamed"}""", Encoding.UTF8, "application/json") };
        var updated = await Http.SendAsync(update, Ct);
        updated.StatusCode.ShouldBe(HttpStatusCode.Forbidden);
        (await updated.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("error").GetString().ShouldBe("no Update");

        var task = await Http.GetFromJsonAsync<JsonElement>($"/tasks/{id}", Ct);
        task.GetProperty("state").GetInt32().ShouldBe(0);
        task.GetProperty("name").GetString().ShouldBe("main");
        _gate.Started.ShouldBeEmpty();
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task AStartWhoseTaskChangesWhileItIsAuthorized_IsAuthorizedAgain_OnTheTaskAsItNowIs(bool batched)
    {
        // Another client's update commits while the start's authorize is deciding on the task as it was: the start is
        // not decided on that outcome (it was allowed on "harmless") but gated again, on "forbidden", and refused.
        await using var alone = batched ? null : await ManagerServer.StartAsync(
            "api_plugins_alone", new Dictionary<string, string> { ["MANAGER_COMMAND_BATCHES"] = "0" }, services: s => s.AddSingleton<IPluginGate>(_gate));
        var http = alone?.Client ?? Http;
        var created = await http.PostAsync("/tasks", new StringContent("""{"name":"harmless"}""", Encoding.UTF8, "application/json"), Ct);
        var id = (await created.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("id").GetString()!;
        _gate.DenyTask = (action, task) => action == PluginAction.Start && task.Name == "forbidden" ? "forbidden tasks do not start" : null;
        var changed = 0;
        _gate.BeforeAuthorize = async (context, _) =>
        {
            if (context.Action == PluginAction.Start && Interlocked.Exchange(ref changed, 1) == 0)
            {
                using var update = new HttpRequestMessage(HttpMethod.Put, $"/tasks/{id}") { Content = new StringContent("""{"name":"forbidden"}""", Encoding.UTF8, "application/json") };
                var updated = await http.SendAsync(update, Ct);
                updated.StatusCode.ShouldBe(HttpStatusCode.OK, await updated.Content.ReadAsStringAsync(Ct));
            }
        };

        var started = await http.PostAsync($"/tasks/{id}/start", null, Ct);

        started.StatusCode.ShouldBe(HttpStatusCode.Forbidden, (alone ?? _server).Warnings.ToString());
        (await started.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("error").GetString().ShouldBe("forbidden tasks do not start");
        _gate.Calls.Where(c => c.Hook == "authorize" && c.Action == PluginAction.Start).Select(c => c.Task.Name).ShouldBe(["harmless", "forbidden"]);
        var history = (await http.GetFromJsonAsync<JsonElement>($"/tasks/{id}/history", Ct)).EnumerateArray().Select(e => e.GetProperty("type").GetString()).ToList();
        history.ShouldBe(["task.created.v1", "task.updated.v1"]);
        _gate.Started.ShouldBeEmpty();
    }

    [Fact]
    public async Task AStartWhoseTaskChangesAtEveryGate_Is409_AfterSixteenGates_AndNothingIsStored()
    {
        var id = await CreateAsync("""{"name":"busy"}""");
        var renames = 0;
        _gate.BeforeAuthorize = async (context, _) =>
        {
            if (context.Action == PluginAction.Start)
            {
                using var update = new HttpRequestMessage(HttpMethod.Put, $"/tasks/{id}") { Content = new StringContent($$"""{"name":"busy-{{Interlocked.Increment(ref renames)}}"}""", Encoding.UTF8, "application/json") };
                (await Http.SendAsync(update, Ct)).StatusCode.ShouldBe(HttpStatusCode.OK);
            }
        };

        var started = await PostAsync($"/tasks/{id}/start", null);

        started.StatusCode.ShouldBe(HttpStatusCode.Conflict);
        (await started.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("error").GetString().ShouldBe($"task {id} changed each of the 16 times its command was authorized; try again");
        _gate.Calls.Count(c => c.Hook == "authorize" && c.Action == PluginAction.Start).ShouldBe(16);
        var history = (await Http.GetFromJsonAsync<JsonElement>($"/tasks/{id}/history", Ct)).EnumerateArray().Select(e => e.GetProperty("type").GetString()).ToList();
        history.ShouldNotContain("task.started.v1");
        history.Count.ShouldBe(17);
    }

    [Fact]
    public async Task ATaskThatDoesNotChange_IsAuthorizedOnce_PerCommand()
    {
        var id = await CreateAsync("""{"name":"steady","env":{"B":"2","A":"1"},"inputs":[1,2]}""");

        (await PostAsync($"/tasks/{id}/start", null)).StatusCode.ShouldBe(HttpStatusCode.OK);
        (await PostAsync($"/tasks/{id}/stop", null)).StatusCode.ShouldBe(HttpStatusCode.OK);

        // What the gate read of the task (the view) equals the task as fetched for writing: no second authorize.
        _gate.Calls.Count(c => c.Hook == "authorize" && c.Action == PluginAction.Start).ShouldBe(1);
        _gate.Calls.Count(c => c.Hook == "authorize" && c.Action == PluginAction.Stop).ShouldBe(1);
    }

    [Fact]
    public async Task SelectionDenied_FailsTheAttemptWithTheReason()
    {
        var id = await CreateAsync("""{"name":"main"}""");
        _gate.Deny = (hook, _) => hook == "on_before_proplet_select" ? "maintenance window" : null;

        (await PostAsync($"/tasks/{id}/start", null)).StatusCode.ShouldBe(HttpStatusCode.OK);

        var task = await Http.GetFromJsonAsync<JsonElement>($"/tasks/{id}?wait=30s", Ct);
        task.GetProperty("state").GetInt32().ShouldBe(4);
        task.GetProperty("error").GetString().ShouldBe("proplet selection blocked by plugin: maintenance window");
        _gate.Calls.ShouldContain(c => c.Hook == "on_before_proplet_select" && c.User == "alice" && c.Task.Id == id);
        _gate.Started.ShouldBe([id]);
    }

    [Fact]
    public async Task Dispatch_CarriesThePluginsExtraEnv_ToTheProplet_AndKeepsIt_ThenCompletionIsAnnounced()
    {
        var propletId = Guid.NewGuid().ToString();
        var starts = new ConcurrentQueue<JsonElement>();
        BrokerConnection? proplet = null;
        proplet = new BrokerConnection(new BrokerOptions { ClientId = propletId }.WithAddress(Broker))
        {
            Handler = Inbox.Each(async (message, token) =>
            {
                var start = JsonDocument.Parse(message.Payload).RootElement.Clone();
                starts.Enqueue(start);
                var result = JsonSerializer.SerializeToUtf8Bytes(new { task_id = start.GetProperty("id").GetString(), proplet_id = propletId, results = "ok" });
                await proplet!.PublishAsync($"{Base}/control/proplet/results", result, MqttQualityOfServiceLevel.AtLeastOnce, token);
            }),
        };
        await using (proplet)
        {
            await proplet.StartAsync(Ct);
            await proplet.SubscribeAsync($"{Base}/control/manager/start", MqttQualityOfServiceLevel.AtLeastOnce, Ct);
            await proplet.PublishAsync(
                $"{Base}/control/proplet/create", JsonSerializer.SerializeToUtf8Bytes(new { proplet_id = propletId, metadata = new { tags = new[] { "gpu" }, location = "lab" } }), MqttQualityOfServiceLevel.AtLeastOnce,
                Ct);
            await proplet.PublishAsync($"{Base}/control/proplet/alive", JsonSerializer.SerializeToUtf8Bytes(new { proplet_id = propletId, status = "alive" }), MqttQualityOfServiceLevel.AtLeastOnce, Ct);
            _gate.Select = new SelectOutcome(true, null, ["gpu"], 0, []);
            _gate.ExtraEnv = new Dictionary<string, string> { ["REGION"] = "eu" };
            var id = await CreateAsync("""{"name":"main","env":{"A":"1"}}""");

            (await PostAsync($"/tasks/{id}/start", null)).StatusCode.ShouldBe(HttpStatusCode.OK);

            var task = await Http.GetFromJsonAsync<JsonElement>($"/tasks/{id}?wait=30s", Ct);
            task.GetProperty("state").GetInt32().ShouldBe(3);
            task.GetProperty("env").GetProperty("REGION").GetString().ShouldBe("eu");
            var start = starts.Single(s => s.GetProperty("id").GetString() == id);
            start.GetProperty("env").GetProperty("REGION").GetString().ShouldBe("eu");
            start.GetProperty("env").GetProperty("A").GetString().ShouldBe("1");
            _gate.Calls.ShouldContain(c => c.Hook == "on_before_dispatch" && c.Proplet!.Id == propletId && c.Proplet.Location == "lab" && c.Proplet.Tags.Contains("gpu"));
            var deadline = DateTime.UtcNow.AddSeconds(10);
            while (_gate.Completed.IsEmpty && DateTime.UtcNow < deadline)
            {
                await Task.Delay(20, Ct);
            }

            _gate.Completed.ShouldContain((id, true));
            var dispatched = (await Http.GetFromJsonAsync<JsonElement>($"/tasks/{id}/history", Ct)).EnumerateArray().Single(e => e.GetProperty("type").GetString() == "task.dispatched.v1");
            dispatched.GetProperty("headers").GetProperty("plugins").GetString()!.ShouldContain("on_before_dispatch");
        }
    }

    /// <summary>A result of another attempt, ignored while the task runs, announces no completion to the plugins; the
    /// current attempt's result does.</summary>
    [Fact]
    public async Task AResultOfAnotherAttempt_AnnouncesNoCompletion()
    {
        var propletId = Guid.NewGuid().ToString();
        var proplet = new BrokerConnection(new BrokerOptions { ClientId = propletId }.WithAddress(Broker)) { Handler = Inbox.Each((_, _) => ValueTask.CompletedTask) };
        await using (proplet)
        {
            await proplet.StartAsync(Ct);
            await proplet.PublishAsync($"{Base}/control/proplet/create", JsonSerializer.SerializeToUtf8Bytes(new { proplet_id = propletId }), MqttQualityOfServiceLevel.AtLeastOnce, Ct);
            await proplet.PublishAsync($"{Base}/control/proplet/alive", JsonSerializer.SerializeToUtf8Bytes(new { proplet_id = propletId, status = "alive" }), MqttQualityOfServiceLevel.AtLeastOnce, Ct);
            var id = await CreateAsync("""{"name":"main"}""");
            var deadline = DateTime.UtcNow.AddSeconds(30);
            HttpStatusCode started;
            while ((started = (await PostAsync($"/tasks/{id}/start", null)).StatusCode) != HttpStatusCode.OK && DateTime.UtcNow < deadline)
            {
                await Task.Delay(50, Ct);
            }

            started.ShouldBe(HttpStatusCode.OK);
            while ((await Http.GetFromJsonAsync<JsonElement>($"/tasks/{id}", Ct)).GetProperty("state").GetInt32() != 2 && DateTime.UtcNow < deadline)
            {
                await Task.Delay(20, Ct);
            }

            async Task ResultAsync(int attempt) => await proplet.PublishAsync(
                $"{Base}/control/proplet/results", JsonSerializer.SerializeToUtf8Bytes(new { task_id = id, proplet_id = propletId, results = "ok", attempt }), MqttQualityOfServiceLevel.AtLeastOnce, Ct);
            await ResultAsync(7);
            while (!(await Http.GetFromJsonAsync<JsonElement>($"/tasks/{id}/history", Ct)).EnumerateArray().Any(e => e.GetProperty("type").GetString() == "task.result_ignored.v1") && DateTime.UtcNow < deadline)
            {
                await Task.Delay(20, Ct);
            }

            await ResultAsync(1);
            (await Http.GetFromJsonAsync<JsonElement>($"/tasks/{id}?wait=30s", Ct)).GetProperty("state").GetInt32().ShouldBe(3);
            while (!_gate.Completed.Any(c => c.Id == id) && DateTime.UtcNow < deadline)
            {
                await Task.Delay(20, Ct);
            }

            await Task.Delay(200, Ct);
            _gate.Completed.Where(c => c.Id == id).ShouldBe([(id, true)]);
        }
    }

    [Fact]
    public async Task DispatchDenied_FailsTheAttempt_WithTheSelectAndDispatchDecisionsInTheEventMetadata()
    {
        var propletId = Guid.NewGuid().ToString();
        await using var proplet = await ConnectAliveAsync(propletId, ["gpu"]);
        _gate.Deny = (hook, _) => hook == "on_before_dispatch" ? "quota exceeded" : null;
        var id = await CreateAsync("""{"name":"main"}""");

        (await PostAsync($"/tasks/{id}/start", null)).StatusCode.ShouldBe(HttpStatusCode.OK);

        var task = await Http.GetFromJsonAsync<JsonElement>($"/tasks/{id}?wait=30s", Ct);
        task.GetProperty("state").GetInt32().ShouldBe(4);
        task.GetProperty("error").GetString().ShouldBe("dispatch blocked by plugin: quota exceeded");
        var failed = (await Http.GetFromJsonAsync<JsonElement>($"/tasks/{id}/history", Ct)).EnumerateArray().Single(e => e.GetProperty("type").GetString() == "task.failed.v1");
        var decisions = JsonDocument.Parse(failed.GetProperty("headers").GetProperty("plugins").GetString()!).RootElement;
        decisions.EnumerateArray().Select(d => d.GetProperty("hook").GetString()).ShouldBe(["on_before_proplet_select", "on_before_dispatch"]);
        _gate.Calls.ShouldContain(c => c.Hook == "on_before_dispatch" && c.Proplet!.Id == propletId && c.User == "alice");
    }

    [Fact]
    public async Task SelectionNarrowedToTagsNoProplethas_TheTaskWaitsAndSaysWhy_WithTheDecisionInTheMetadata()
    {
        var propletId = Guid.NewGuid().ToString();
        await using var proplet = await ConnectAliveAsync(propletId, ["cpu"]);
        _gate.Select = new SelectOutcome(true, null, ["gpu"], 0, []);
        var id = await CreateAsync("""{"name":"main"}""");

        (await PostAsync($"/tasks/{id}/start", null)).StatusCode.ShouldBe(HttpStatusCode.OK);

        JsonElement? deferred = null;
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (deferred is null && DateTime.UtcNow < deadline)
        {
            await Task.Delay(50, Ct);
            deferred = (await Http.GetFromJsonAsync<JsonElement>($"/tasks/{id}/history", Ct)).EnumerateArray().FirstOrDefault(e => e.GetProperty("type").GetString() == "task.dispatch_deferred.v1") is { ValueKind: JsonValueKind.Object } e ? e : null;
        }

        deferred.ShouldNotBeNull();
        deferred.Value.GetProperty("data").GetProperty("reason").GetString().ShouldBe("no proplet satisfies the required tags and memory");
        deferred.Value.GetProperty("headers").GetProperty("plugins").GetString()!.ShouldContain("on_before_proplet_select");
        (await Http.GetFromJsonAsync<JsonElement>($"/tasks/{id}", Ct)).GetProperty("state").GetInt32().ShouldBe(1);
        _gate.Calls.ShouldNotContain(c => c.Hook == "on_before_dispatch");
    }

    /// <summary>A proplet with <paramref name="tags"/> that registers and sends one heartbeat (it never answers a start).</summary>
    private async Task<BrokerConnection> ConnectAliveAsync(string propletId, string[] tags)
    {
        var proplet = new BrokerConnection(new BrokerOptions { ClientId = propletId }.WithAddress(Broker));
        await proplet.StartAsync(Ct);
        await proplet.PublishAsync($"{Base}/control/proplet/create", JsonSerializer.SerializeToUtf8Bytes(new { proplet_id = propletId, metadata = new { tags } }), MqttQualityOfServiceLevel.AtLeastOnce, Ct);
        await proplet.PublishAsync($"{Base}/control/proplet/alive", JsonSerializer.SerializeToUtf8Bytes(new { proplet_id = propletId, status = "alive" }), MqttQualityOfServiceLevel.AtLeastOnce, Ct);
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (DateTime.UtcNow < deadline)
        {
            var response = await Http.GetAsync($"/proplets/{propletId}", Ct);
            if (response.IsSuccessStatusCode && (await response.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("alive").GetBoolean())
            {
                return proplet;
            }

            await Task.Delay(20, Ct);
        }

        throw new TimeoutException($"proplet {propletId} never became alive");
    }

    private sealed record Call(string Hook, PluginAction Action, string? User, PluginTaskInfo Task, PluginPropletInfo? Proplet);

    /// <summary>A gate that answers as the test says and records every call.</summary>
    private sealed class ScriptedGate : IPluginGate
    {
        public ConcurrentQueue<Call> Calls { get; } = new();

        public ConcurrentQueue<string> Started { get; } = new();

        public ConcurrentQueue<(string Id, bool Success)> Completed { get; } = new();

        public Func<string, PluginAction, string?> Deny { get; set; } = (_, _) => null;

        /// <summary>An authorize's deny by what it is shown of the task (after <see cref="Deny"/>).</summary>
        public Func<PluginAction, PluginTaskInfo, string?> DenyTask { get; set; } = (_, _) => null;

        /// <summary>Runs at the start of every authorize, before it decides (on the task as it was shown).</summary>
        public Func<PluginAuthContext, PluginTaskInfo, Task> BeforeAuthorize { get; set; } = (_, _) => Task.CompletedTask;

        public EnrichOutcome Enrich { get; set; } = EnrichOutcome.None;

        public SelectOutcome Select { get; set; } = SelectOutcome.Allow;

        public IReadOnlyDictionary<string, string> ExtraEnv { get; set; } = new Dictionary<string, string>();

        private PluginDecision[] Record(string hook, PluginAuthContext context, PluginTaskInfo task, PluginPropletInfo? proplet, out string? denied)
        {
            Calls.Enqueue(new Call(hook, context.Action, context.UserId, task, proplet));
            denied = Deny(hook, context.Action) ?? (hook == "authorize" ? DenyTask(context.Action, task) : null);
            return [new PluginDecision("scripted", hook, denied is null, denied, TimeSpan.FromMicroseconds(5))];
        }

        public async ValueTask<GateOutcome> AuthorizeAsync(PluginAuthContext context, PluginTaskInfo task, CancellationToken cancellationToken)
        {
            await BeforeAuthorize(context, task);
            var decisions = Record("authorize", context, task, null, out var denied);
            return new GateOutcome(denied is null, denied, decisions);
        }

        public ValueTask<EnrichOutcome> EnrichAsync(PluginAuthContext context, PluginTaskInfo task, CancellationToken cancellationToken)
        {
            var decisions = Record("enrich_task", context, task, null, out _);
            return ValueTask.FromResult(Enrich with { Decisions = decisions });
        }

        public ValueTask<SelectOutcome> BeforePropletSelectAsync(PluginAuthContext context, PluginTaskInfo task, CancellationToken cancellationToken)
        {
            var decisions = Record("on_before_proplet_select", context, task, null, out var denied);
            return ValueTask.FromResult(denied is null ? Select with { Decisions = decisions } : new SelectOutcome(false, denied, [], 0, decisions));
        }

        public ValueTask<DispatchOutcome> BeforeDispatchAsync(PluginAuthContext context, PluginTaskInfo task, PluginPropletInfo proplet, CancellationToken cancellationToken)
        {
            var decisions = Record("on_before_dispatch", context, task, proplet, out var denied);
            return ValueTask.FromResult(new DispatchOutcome(denied is null, denied, ExtraEnv, decisions));
        }

        public void OnTaskStarted(PluginTaskInfo task) => Started.Enqueue(task.Id);

        public void OnTaskCompleted(PluginTaskInfo task, bool success, string? error) => Completed.Enqueue((task.Id, success));
    }
}
