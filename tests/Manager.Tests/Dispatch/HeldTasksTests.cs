using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using System.Threading.Channels;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using MQTTnet.Protocol;
using Propeller.Application.Proplets;
using Propeller.Broker;
using Propeller.Broker.Tests;
using Propeller.Domain.Proplets;
using Propeller.Infrastructure.MartenStore;
using Propeller.Infrastructure.Wolverine;
using Propeller.Manager.Tests.Telemetry;
using Propeller.Manager.Wolverine;

namespace Propeller.Manager.Tests.Dispatch;

/// <summary>
/// A proplet's report of what it holds (its discovery's <c>tasks</c>) against what the manager has recorded, on real
/// PostgreSQL and mosquitto with a simulated proplet: a start the broker dropped while the proplet had no session is
/// sent again, a stop that was lost is sent again, and nothing is sent for what the proplet does hold.
/// </summary>
public sealed class HeldTasksTests : IAsyncLifetime
{
    private readonly string _tenant = "h" + Guid.NewGuid().ToString("N")[..12];
    private readonly string _propletId = Guid.NewGuid().ToString();
    private readonly Channel<JsonElement> _stops = Channel.CreateUnbounded<JsonElement>();

    // The scheduling's information entries (a proplet back within the delay keeps its tasks: logged, nothing else shows).
    private readonly LogRecorder _scheduling = new();
    private ManagerServer _server = null!;

    private string Base => $"m/{_tenant}/c/ch";

    private static string Broker => Environment.GetEnvironmentVariable("PROPELLER_TEST_MQTT") is { Length: > 0 } value ? value : "tcp://127.0.0.1:51883";

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private HttpClient Http => _server.Client;

    public async ValueTask InitializeAsync()
    {
        _server = await ManagerServer.StartAsync("held_tasks", new Dictionary<string, string>
        {
            ["MANAGER_MQTT_ADDRESS"] = Broker,
            ["MANAGER_TENANT_ID"] = _tenant,
            ["MANAGER_CHANNEL_ID"] = "ch",
            ["MANAGER_ENTITY_ID"] = "manager-" + _tenant,
            ["MANAGER_MQTT_QOS"] = "1",
            ["MANAGER_OFFLINE_REDISPATCH_DELAY"] = "4s", // a proplet back after its Last Will: room for a slow machine
        }, services: s => s.AddLogging(l => l.AddProvider(_scheduling).AddFilter<LogRecorder>(typeof(WolverineScheduling).FullName, LogLevel.Information)));

        // A start on time is not sent again for 5 s after its dispatch (it may be on its way): at once here.
        var reconciler = _server.Services.GetRequiredService<HeldTasksReconciler>();
        reconciler.ResendAfter = TimeSpan.Zero;
        reconciler.ResendInterval = TimeSpan.Zero; // and again at every report (5 s apart at least: one report reaches every node)
    }

    public async ValueTask DisposeAsync() => await _server.DisposeAsync();

    /// <summary>
    /// The proplet (a clean session, the original's default) is away when its task's start is published: the broker drops
    /// it, and the proplet's heartbeats kept the task Running for ever. Its report on coming back lacks the task, so the
    /// start goes out again (the same attempt, recorded as <c>task.start_resent.v1</c>); a report that holds it sends
    /// nothing more, and a report the manager cannot read whole (logged as malformed) reconciles nothing.
    /// </summary>
    [Fact]
    public async Task GivenAStartDroppedWhileThePropletHadNoSession_WhenItReportsWhatItHolds_ThenTheStartIsSentAgainOnce()
    {
        var starts = Channel.CreateUnbounded<JsonElement>();
        var first = await ConnectAsync(starts);
        await ReportAsync(first, []);
        await using (HeartbeatLoop.Start(first, Base, _propletId, Ct))
        {
            await ManagerWaits.AliveAsync(Http, _propletId);
        }

        await first.DisposeAsync(); // a clean disconnect: no Last Will, the proplet stays alive for the liveness window

        // Another client on the start topic sees the start go out (the outbox publishes it after the dispatch commits,
        // later on a loaded machine): only then is the proplet's session connected again, so the broker dropped it.
        var observed = Channel.CreateUnbounded<JsonElement>();
        string id;
        await using (await ObserveStartsAsync(observed))
        {
            id = await CreateAndStartAsync();
            (await NextAsync(observed)).GetProperty("id").GetString().ShouldBe(id);
        }

        await using var second = await ConnectAsync(starts);
        await PublishAsync(second, "control/proplet/create", """{"proplet_id":"PROPLET","tasks":[{"task_id":"not a task"}]}""".Replace("PROPLET", _propletId, StringComparison.Ordinal));
        await ManagerWaits.UntilAsync(() => Task.FromResult(_server.Warnings.ToString().Contains("is not reconciled", StringComparison.Ordinal)), "the malformed report logged", detail: _server.Warnings.ToString);
        await Task.Delay(1000, Ct); // a start its reconciliation would have sent (there is none) is on its way
        starts.Reader.TryRead(out var early).ShouldBeFalse($"a start after a malformed report: {early}");
        (await TypesAsync(id)).ShouldNotContain("task.start_resent.v1");

        await ReportAsync(second, []);
        var start = await NextAsync(starts);
        (start.GetProperty("id").GetString(), start.GetProperty("attempt").GetInt32(), start.GetProperty("dispatch").GetInt32(), start.GetProperty("proplet_id").GetString())
            .ShouldBe((id, 1, 1, _propletId));
        (await TypesAsync(id)).ShouldBe(["task.created.v1", "task.start_requested.v1", "task.dispatched.v1", "task.start_resent.v1"]);

        await ReconciledAsync(() => ReportAsync(second, [(id, 1)]));
        (await TypesAsync(id)).Count(t => t == "task.start_resent.v1").ShouldBe(1, "sent again though held"); // committed with its start
        starts.Reader.TryRead(out var extra).ShouldBeFalse($"sent again though held: {extra}");

        await PublishAsync(second, "control/proplet/results", JsonSerializer.Serialize(new { task_id = id, proplet_id = _propletId, results = "42", error = (string?)null, attempt = 1 }));
        (await ManagerWaits.ForStateAsync(Http, id, 3, _server.Warnings.ToString)).GetProperty("results").GetString().ShouldBe("42");
        (await TypesAsync(id)).Count(t => t == "task.start_resent.v1").ShouldBe(1);
    }

    /// <summary>
    /// A proplet that keeps not holding its task after the start was sent again three times (it drops it, or its result
    /// cannot get through): the task is re-dispatched (a second dispatch of the attempt, here to the same proplet, the
    /// only one) instead of being sent again at every report for ever.
    /// </summary>
    [Fact]
    public async Task GivenAPropletThatNeverTakesTheStart_WhenItKeepsReporting_ThenTheTaskIsReDispatchedAfterThreeSends()
    {
        var starts = Channel.CreateUnbounded<JsonElement>();
        var (proplet, heartbeats) = await BeatingAsync(starts);
        await using var connection = proplet;
        await using var beating = heartbeats;
        var id = await CreateAndStartAsync();
        (await NextAsync(starts)).GetProperty("dispatch").GetInt32().ShouldBe(1);

        var dispatches = new List<int>();
        for (var report = 1; report <= 4; report++)
        {
            await ReportAsync(proplet, []);
            dispatches.Add((await NextAsync(starts)).GetProperty("dispatch").GetInt32());
        }

        dispatches.ShouldBe([1, 1, 1, 2]);
        (await TypesAsync(id)).ShouldBe([
            "task.created.v1", "task.start_requested.v1", "task.dispatched.v1",
            "task.start_resent.v1", "task.start_resent.v1", "task.start_resent.v1", "task.redispatch_requested.v1", "task.dispatched.v1"]);

        // The task completes; a report that still holds the first dispatch's run (left over from before the re-dispatch)
        // gets that dispatch's stop alone; one that holds the second (the current one) gets none.
        await PublishAsync(proplet, "control/proplet/results", JsonSerializer.Serialize(new { task_id = id, proplet_id = _propletId, results = "42", error = (string?)null, attempt = 1 }));
        await ManagerWaits.ForStateAsync(Http, id, 3, _server.Warnings.ToString);
        await proplet.SubscribeAsync($"{Base}/control/manager/stop", MqttQualityOfServiceLevel.AtLeastOnce, Ct);
        await PublishAsync(proplet, "control/proplet/create", $$"""{"proplet_id":"{{_propletId}}","tasks":[{"task_id":"{{id}}","attempt":1,"dispatch":2}]}""");
        await PublishAsync(proplet, "control/proplet/create", $$"""{"proplet_id":"{{_propletId}}","tasks":[{"task_id":"{{id}}","attempt":1,"dispatch":1}]}""");
        var stop = await NextAsync(_stops);
        (stop.GetProperty("id").GetString(), stop.GetProperty("attempt").GetInt32(), stop.GetProperty("dispatch").GetInt32(), stop.GetProperty("proplet_id").GetString())
            .ShouldBe((id, 1, 1, _propletId));
        await Task.Delay(1000, Ct);
        _stops.Reader.TryRead(out var extra).ShouldBeFalse($"a second stop: {extra}");
    }

    /// <summary>
    /// A stop the proplet never got (it was away): its report still holds the stopped task, so that attempt's stop goes
    /// out again, to this proplet alone. A held task still running there, and one the manager does not know, get nothing.
    /// </summary>
    [Fact]
    public async Task GivenAStoppedTaskThePropletStillHolds_WhenItReports_ThenItsStopIsSentAgain()
    {
        var starts = Channel.CreateUnbounded<JsonElement>();
        var (proplet, heartbeats) = await BeatingAsync(starts);
        await using var connection = proplet;
        await using var beating = heartbeats;

        var stopped = await CreateAndStartAsync();
        var running = await CreateAndStartAsync();
        var ids = new[] { (await NextAsync(starts)).GetProperty("id").GetString(), (await NextAsync(starts)).GetProperty("id").GetString() };
        ids.Order(StringComparer.Ordinal).ShouldBe(new[] { stopped, running }.Order(StringComparer.Ordinal));
        // Its stop published while the proplet is not subscribed to stops (the broker drops it for this session): seen by
        // a watcher first, since the stop leaves through the outbox after the API's answer.
        await using (var watcher = new BrokerConnection(new BrokerOptions { ClientId = "watch-" + _tenant }.WithAddress(Broker)))
        {
            var seen = Inbox.Of(watcher);
            await watcher.StartAsync(Ct);
            await watcher.SubscribeAsync($"{Base}/control/manager/stop", MqttQualityOfServiceLevel.AtLeastOnce, Ct);
            (await Http.PostAsync($"/tasks/{stopped}/stop", null, Ct)).EnsureSuccessStatusCode();
            await seen.ReceiveAsync(Ct);
        }

        await proplet.SubscribeAsync($"{Base}/control/manager/stop", MqttQualityOfServiceLevel.AtLeastOnce, Ct);
        await ReportAsync(proplet, [(stopped, 1), (running, 1), (Guid.NewGuid().ToString(), 1)]);

        var stop = await NextAsync(_stops);
        (stop.GetProperty("id").GetString(), stop.GetProperty("attempt").GetInt32(), stop.GetProperty("proplet_id").GetString(), stop.GetProperty("broadcast").GetBoolean())
            .ShouldBe((stopped, 1, _propletId, false));
        await Task.Delay(1000, Ct);
        _stops.Reader.TryRead(out var extra).ShouldBeFalse($"a second stop: {extra}");
        starts.Reader.TryRead(out var start).ShouldBeFalse($"a start sent again: {start}");
        (await TypesAsync(running)).ShouldNotContain("task.start_resent.v1");
    }

    /// <summary>
    /// A result saying its run goes on (our proplet's "started at port N" of a served HTTP proxy, <c>"running":true</c>)
    /// completes the task, which the proplet still holds: its report gets nothing, and the API's stop (before, 409: the
    /// task was completed) goes to the proplet and interrupts the task. Without the field it is an ordinary result.
    /// </summary>
    [Fact]
    public async Task GivenAResultThatLeavesItsRunGoing_WhenTheTaskIsStopped_ThenTheStopGoesToItsProplet()
    {
        var starts = Channel.CreateUnbounded<JsonElement>();
        var (proplet, heartbeats) = await BeatingAsync(starts);
        await using var connection = proplet;
        await using var beating = heartbeats;
        await proplet.SubscribeAsync($"{Base}/control/manager/stop", MqttQualityOfServiceLevel.AtLeastOnce, Ct);
        var served = await CreateAndStartAsync();
        var finished = await CreateAndStartAsync();
        await NextAsync(starts);
        await NextAsync(starts);

        await PublishAsync(proplet, "control/proplet/results", JsonSerializer.Serialize(new { task_id = served, proplet_id = _propletId, results = "started at port 8080", error = (string?)null, attempt = 1, running = true }));
        await PublishAsync(proplet, "control/proplet/results", JsonSerializer.Serialize(new { task_id = finished, proplet_id = _propletId, results = "42", error = (string?)null, attempt = 1 }));
        await ManagerWaits.ForStateAsync(Http, served, 3, _server.Warnings.ToString);
        await ManagerWaits.ForStateAsync(Http, finished, 3, _server.Warnings.ToString);
        await ReportAsync(proplet, [(served, 1)]);
        await Task.Delay(1000, Ct);
        _stops.Reader.TryRead(out var early).ShouldBeFalse($"a stop for a run the task still has: {early}");

        (await Http.PostAsync($"/tasks/{finished}/stop", null, Ct)).StatusCode.ShouldBe(System.Net.HttpStatusCode.Conflict);
        (await Http.PostAsync($"/tasks/{served}/stop", null, Ct)).EnsureSuccessStatusCode();
        var stop = await NextAsync(_stops);
        (stop.GetProperty("id").GetString(), stop.GetProperty("attempt").GetInt32(), stop.GetProperty("proplet_id").GetString()).ShouldBe((served, 1, _propletId));
        (await ManagerWaits.ForStateAsync(Http, served, 6, _server.Warnings.ToString)).GetProperty("results").GetString().ShouldBe("started at port 8080");
    }

    /// <summary>
    /// A serving task's run is the proplet's, as a running one is. The proplet restarted and reports without it: its
    /// start goes out again and the task stays serving; the run's "started" again is recorded (task.serving_resumed.v1). Its run then ends on its own (our proplet's result with
    /// <c>"running":false</c>): with an error the task fails; without, it stays Completed with what it produced and is no
    /// longer serving (deleted without a stop: before, it was taken for serving for ever, and the delete was 409). Serving
    /// tasks count in the proplet's task_count (before, only running ones: a proplet with daemons on it could be deleted).
    /// The proplet goes offline: a serving task there is re-dispatched.
    /// </summary>
    [Fact]
    public async Task GivenServingTasks_WhenThePropletLosesThemOrTheyEndOrItGoesOffline_ThenTheManagerFollows()
    {
        var starts = Channel.CreateUnbounded<JsonElement>();
        await using var proplet = await ConnectAsync(starts);
        await ReportAsync(proplet, []);
        await using (HeartbeatLoop.Start(proplet, Base, _propletId, Ct))
        {
            await ManagerWaits.AliveAsync(Http, _propletId);
            string[] tasks = [await CreateAndStartAsync(), await CreateAndStartAsync(), await CreateAndStartAsync()];
            foreach (var id in tasks)
            {
                await NextAsync(starts);
                await PublishAsync(proplet, "control/proplet/results", Result(id, "started at port 8080", null, running: true));
                await ManagerWaits.ForStateAsync(Http, id, 3, _server.Warnings.ToString);
            }

            (await Http.GetFromJsonAsync<JsonElement>($"/proplets/{_propletId}", Ct)).GetProperty("task_count").GetInt32().ShouldBe(3, "serving tasks are the proplet's");
            await ReportAsync(proplet, []); // it restarted: it holds none of them
            var resent = new List<string>();
            for (var i = 0; i < tasks.Length; i++)
            {
                var start = await NextAsync(starts);
                start.GetProperty("attempt").GetInt32().ShouldBe(1);
                resent.Add(start.GetProperty("id").GetString()!);
            }

            resent.Order(StringComparer.Ordinal).ShouldBe(tasks.Order(StringComparer.Ordinal));
            await PublishAsync(proplet, "control/proplet/results", Result(tasks[0], "started at port 8080", null, running: true));
            await ManagerWaits.UntilAsync(async () => (await TypesAsync(tasks[0])).Contains("task.serving_resumed.v1"), "the run started anew recorded", detail: _server.Warnings.ToString);
            (await Http.DeleteAsync($"/tasks/{tasks[0]}", Ct)).StatusCode.ShouldBe(System.Net.HttpStatusCode.Conflict, "still serving");

            await PublishAsync(proplet, "control/proplet/results", Result(tasks[0], null, "exit status 3", running: false));
            await PublishAsync(proplet, "control/proplet/results", Result(tasks[1], "bye", null, running: false));
            (await ManagerWaits.ForStateAsync(Http, tasks[0], 4, _server.Warnings.ToString)).GetProperty("error").GetString().ShouldBe("exit status 3");
            await ManagerWaits.UntilAsync(async () => (await TypesAsync(tasks[1])).Contains("task.serving_ended.v1"), "the end recorded", detail: _server.Warnings.ToString);
            (await Http.GetFromJsonAsync<JsonElement>($"/tasks/{tasks[1]}", Ct)).GetProperty("results").GetString().ShouldBe("bye");
            (await Http.PostAsync($"/tasks/{tasks[1]}/stop", null, Ct)).StatusCode.ShouldBe(System.Net.HttpStatusCode.Conflict, "its run ended");
            (await Http.DeleteAsync($"/tasks/{tasks[1]}", Ct)).StatusCode.ShouldBe(System.Net.HttpStatusCode.NoContent);
            (await Http.GetFromJsonAsync<JsonElement>($"/proplets/{_propletId}", Ct)).GetProperty("task_count").GetInt32().ShouldBe(1);
            (await Http.DeleteAsync($"/proplets/{_propletId}", Ct)).StatusCode.ShouldBe(System.Net.HttpStatusCode.Conflict, "a daemon serves there");

            await PublishAsync(proplet, "control/proplet/alive", JsonSerializer.Serialize(new { proplet_id = _propletId, status = "offline" }));
            await ManagerWaits.UntilAsync(async () => (await TypesAsync(tasks[2])).Contains("task.redispatch_requested.v1"), "the serving task re-dispatched", detail: _server.Warnings.ToString);
            (await TypesAsync(tasks[0])).ShouldNotContain("task.redispatch_requested.v1");
        }
    }

    /// <summary>
    /// A daemon that ends at once sends its "started" result and its end back to back; they may reach the manager in
    /// different broker batches, handled side by side. Held here: the batch with "started" waits while the end arrives.
    /// They are decided in the order they came (the task completed serving, then its serving ended); decided side by side,
    /// the end won the stream's race, completed the task as a plain run and left "started" ignored on a completed task.
    /// </summary>
    [Fact]
    public async Task GivenAStartedResultAndItsEndInTwoBatches_WhenTheFirstIsSlowToBeDecided_ThenTheyAreDecidedInTheirOrder()
    {
        await using var run = await RunningOnABeatingPropletAsync();
        var (starts, proplet, id) = (run.Starts, run.Proplet, run.Id);

        var (held, release) = HoldResults(id, started: true);
        await PublishAsync(proplet, "control/proplet/results", Result(id, "", null, running: true));
        await held.WaitAsync(TimeSpan.FromSeconds(20), Ct);
        await PublishAsync(proplet, "control/proplet/results", Result(id, "5", null, running: false));
        await Task.Delay(1000, Ct); // the end's batch handed over meanwhile
        release.SetResult();

        await ManagerWaits.UntilAsync(async () => (await TypesAsync(id)) is var types && (types.Contains("task.serving_ended.v1") || types.Contains("task.result_ignored.v1")), "both results decided", detail: _server.Warnings.ToString);
        (await TypesAsync(id)).ShouldBe(["task.created.v1", "task.start_requested.v1", "task.dispatched.v1", "task.completed.v1", "task.serving_ended.v1"]);
        (await Http.GetFromJsonAsync<JsonElement>($"/tasks/{id}", Ct)).GetProperty("results").GetString().ShouldBe("5");
    }

    /// <summary>
    /// A proplet publishes its last result and goes away (its Last Will follows, here in a later broker batch while the
    /// result's is held): the will is handled after the result, so the task completes and nothing is re-dispatched.
    /// Handled side by side, the will marked the proplet offline and re-dispatched the task first, and the result was
    /// then ignored: the task ran a second time.
    /// </summary>
    [Fact]
    public async Task GivenAResultThenThePropletsLastWill_WhenTheResultIsSlowToBeDecided_ThenTheTaskCompletesAndIsNotRedispatched()
    {
        await using var run = await RunningOnABeatingPropletAsync();
        var (proplet, id) = (run.Proplet, run.Id);
        await run.Heartbeats.DisposeAsync();

        var (held, release) = HoldResults(id);
        await PublishAsync(proplet, "control/proplet/results", PlainResult(id));
        await held.WaitAsync(TimeSpan.FromSeconds(20), Ct);
        await PublishAsync(proplet, "control/proplet/alive", JsonSerializer.Serialize(new { proplet_id = _propletId, status = "offline" }));
        await Task.Delay(1000, Ct); // the will's batch handed over meanwhile
        release.SetResult();

        (await ManagerWaits.ForStateAsync(Http, id, 3, _server.Warnings.ToString)).GetProperty("results").GetString().ShouldBe("42");
        await ManagerWaits.UntilAsync(async () => !(await Http.GetFromJsonAsync<JsonElement>($"/proplets/{_propletId}", Ct)).GetProperty("alive").GetBoolean(), "the proplet offline", detail: _server.Warnings.ToString);
        await Task.Delay(500, Ct);
        (await TypesAsync(id)).ShouldBe(["task.created.v1", "task.start_requested.v1", "task.dispatched.v1", "task.completed.v1"]);
    }

    /// <summary>
    /// A proplet finishes a task and then reports what it holds, without it, while the result is still being decided
    /// (held here): the report is reconciled after the result, so the finished task's start is not sent again. Reconciled
    /// beside it, the task still Running and not held, its start went out again and the task ran a second time.
    /// </summary>
    [Fact]
    public async Task GivenAResultThenAReportWithoutItsTask_WhenTheResultIsSlowToBeDecided_ThenTheStartIsNotSentAgain()
    {
        await using var run = await RunningOnABeatingPropletAsync();
        var (starts, proplet, id) = (run.Starts, run.Proplet, run.Id);

        var (held, release) = HoldResults(id);
        await PublishAsync(proplet, "control/proplet/results", PlainResult(id));
        await held.WaitAsync(TimeSpan.FromSeconds(20), Ct);
        await ReportAsync(proplet, []);
        await Task.Delay(1000, Ct); // the report's batch handed over meanwhile
        release.SetResult();

        (await ManagerWaits.ForStateAsync(Http, id, 3, _server.Warnings.ToString)).GetProperty("results").GetString().ShouldBe("42");
        await Task.Delay(1000, Ct);
        starts.Reader.TryRead(out var again).ShouldBeFalse($"the start sent again: {again}");
        (await TypesAsync(id)).ShouldNotContain("task.start_resent.v1");
    }

    /// <summary>
    /// A proplet's link drops and comes straight back (a session taken over: the broker publishes the Last Will of the
    /// old connection as the new one connects). The will marks it offline, but its tasks are re-dispatched only
    /// MANAGER_OFFLINE_REDISPATCH_DELAY later (4 s here): a proplet back within it that reports what it holds keeps its
    /// running task (not stopped and run again elsewhere), and the task's result completes it. The original proplet,
    /// whose discovery reports nothing, has its task re-dispatched as before (here to itself, the only proplet: a second
    /// dispatch).
    /// </summary>
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task GivenALastWill_WhenThePropletIsBackWithinTheDelay_ThenItKeepsTheTasksItReportsHolding(bool reports)
    {
        await using var run = await RunningOnABeatingPropletAsync();
        var (starts, proplet, id) = (run.Starts, run.Proplet, run.Id);
        await run.Heartbeats.DisposeAsync();
        await PublishAsync(proplet, "control/proplet/alive", JsonSerializer.Serialize(new { proplet_id = _propletId, status = "offline" }));
        await ManagerWaits.UntilAsync(async () => !(await Http.GetFromJsonAsync<JsonElement>($"/proplets/{_propletId}", Ct)).GetProperty("alive").GetBoolean(), "the proplet offline", detail: _server.Warnings.ToString);
        if (reports)
        {
            await ReportAsync(proplet, [(id, 1)]);
        }
        else
        {
            await PublishAsync(proplet, "control/proplet/create", JsonSerializer.Serialize(new { proplet_id = _propletId, @namespace = "default", metadata = new { hostname = "sim" } }));
        }

        if (reports)
        {
            // The re-dispatch, due once the delay is past, found the report and kept the tasks (it logs that, and sends
            // and records nothing).
            await ManagerWaits.UntilAsync(
                () => Task.FromResult(Logged($"Proplet {_propletId} came back")), "the tasks kept on the proplet's return",
                detail: _server.Warnings.ToString);
            starts.Reader.TryRead(out var again).ShouldBeFalse($"started again: {again}");
            _stops.Reader.TryRead(out var stop).ShouldBeFalse($"stopped: {stop}");
            await PublishAsync(proplet, "control/proplet/results", PlainResult(id));
            (await ManagerWaits.ForStateAsync(Http, id, 3, _server.Warnings.ToString)).GetProperty("results").GetString().ShouldBe("42");
            (await TypesAsync(id)).ShouldBe(["task.created.v1", "task.start_requested.v1", "task.dispatched.v1", "task.completed.v1"]);
        }
        else
        {
            (await NextAsync(starts)).GetProperty("dispatch").GetInt32().ShouldBe(2);
            (await TypesAsync(id)).ShouldBe(["task.created.v1", "task.start_requested.v1", "task.dispatched.v1", "task.redispatch_requested.v1", "task.dispatched.v1"]);
            (await Http.GetStringAsync("/metrics", Ct)).ShouldContain("manager_events_committed{type=\"task.redispatch_requested.v1\"}");
        }
    }

    /// <summary>
    /// A task dispatched again to the proplet it ran on (taken for gone after its Last Will, then back) whose second
    /// start the proplet never got: the proplet reports the first dispatch's run, whose result the manager would ignore
    /// (it names the first dispatch), so the task would stay Running for ever (a daemon) or wait for a later report. The
    /// current dispatch's start is sent again (the proplet takes it for the run it holds), as for a run it lacks.
    /// </summary>
    [Fact]
    public async Task GivenATaskDispatchedAgainToItsProplet_WhenThePropletReportsTheEarlierDispatch_ThenTheCurrentStartIsSentAgain()
    {
        await using var run = await RunningOnABeatingPropletAsync();
        var (starts, proplet, id) = (run.Starts, run.Proplet, run.Id);
        await run.Heartbeats.DisposeAsync();
        await PublishAsync(proplet, "control/proplet/alive", JsonSerializer.Serialize(new { proplet_id = _propletId, status = "offline" }));
        await ManagerWaits.UntilAsync(async () => !(await Http.GetFromJsonAsync<JsonElement>($"/proplets/{_propletId}", Ct)).GetProperty("alive").GetBoolean(), "the proplet offline", detail: _server.Warnings.ToString);
        await PublishAsync(proplet, "control/proplet/create", JsonSerializer.Serialize(new { proplet_id = _propletId, @namespace = "default", metadata = new { hostname = "sim" } }));
        (await NextAsync(starts)).GetProperty("dispatch").GetInt32().ShouldBe(2); // past the delay: lost on its way, as the proplet goes

        await PublishAsync(proplet, "control/proplet/create", $$"""{"proplet_id":"{{_propletId}}","tasks":[{"task_id":"{{id}}","attempt":1,"dispatch":1}]}""");

        var again = await NextAsync(starts);
        (again.GetProperty("id").GetString(), again.GetProperty("attempt").GetInt32(), again.GetProperty("dispatch").GetInt32()).ShouldBe((id, 1, 2));
        (await TypesAsync(id)).ShouldBe([
            "task.created.v1", "task.start_requested.v1", "task.dispatched.v1", "task.redispatch_requested.v1", "task.dispatched.v1", "task.start_resent.v1"]);
        _stops.Reader.TryRead(out var stop).ShouldBeFalse($"the run stopped: {stop}");
    }

    /// <summary>
    /// A proplet restarts right after a task was dispatched to it (its Last Will, then a new process that holds nothing).
    /// Its report, sent as it connects, says the broker kept no session: the start sent before it went away is not on its
    /// way, so it is sent again at once (the same run), not only once the dispatch is a few seconds old (here 30 s, so
    /// the difference shows). With a session kept, the broker may still deliver that start: nothing is sent yet.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task GivenAPropletBackAfterItsLastWill_WhenItReportsWithoutASession_ThenWhatItLostIsSentAgainAtOnce(bool sessionPresent)
    {
        _server.Services.GetRequiredService<HeldTasksReconciler>().ResendAfter = TimeSpan.FromSeconds(30);
        await using var run = await RunningOnABeatingPropletAsync();
        var (starts, proplet, id) = (run.Starts, run.Proplet, run.Id);
        await run.Heartbeats.DisposeAsync();
        await PublishAsync(proplet, "control/proplet/alive", JsonSerializer.Serialize(new { proplet_id = _propletId, status = "offline" }));
        await ManagerWaits.UntilAsync(async () => !(await Http.GetFromJsonAsync<JsonElement>($"/proplets/{_propletId}", Ct)).GetProperty("alive").GetBoolean(), "the proplet offline", detail: _server.Warnings.ToString);

        await ReportAsync(proplet, [], sessionPresent);
        if (sessionPresent)
        {
            await Task.Delay(1500, Ct);
            starts.Reader.TryRead(out var early).ShouldBeFalse($"sent while the broker may still deliver it: {early}");
            (await TypesAsync(id)).ShouldNotContain("task.start_resent.v1");
            return;
        }

        var again = await NextAsync(starts);
        (again.GetProperty("id").GetString(), again.GetProperty("attempt").GetInt32(), again.GetProperty("dispatch").GetInt32()).ShouldBe((id, 1, 1));
        (await TypesAsync(id)).ShouldBe(["task.created.v1", "task.start_requested.v1", "task.dispatched.v1", "task.start_resent.v1"]);
    }

    /// <summary>A task started and its start received by a beating proplet (<see cref="BeatingAsync"/>).</summary>
    private async Task<RunningTask> RunningOnABeatingPropletAsync()
    {
        var starts = Channel.CreateUnbounded<JsonElement>();
        var (proplet, heartbeats) = await BeatingAsync(starts);
        var id = await CreateAndStartAsync();
        await NextAsync(starts);
        return new RunningTask(starts, proplet, heartbeats, id);
    }

    private sealed record RunningTask(Channel<JsonElement> Starts, BrokerConnection Proplet, HeartbeatLoop Heartbeats, string Id) : IAsyncDisposable
    {
        public async ValueTask DisposeAsync()
        {
            await Heartbeats.DisposeAsync();
            await Proplet.DisposeAsync();
        }
    }

    /// <summary>Holds the batch with <paramref name="id"/>'s result (one saying its run goes on, when
    /// <paramref name="started"/>) until the release is set; the task ends once it is held.</summary>
    private (Task Held, TaskCompletionSource Release) HoldResults(string id, bool started = false)
    {
        var held = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _server.Services.GetRequiredService<Infrastructure.Mqtt.InboundHandler>().ResultsHook = async results =>
        {
            if (results.Any(r => r.TaskId == Guid.Parse(id) && (!started || r.Running == true)))
            {
                held.TrySetResult();
                await release.Task.WaitAsync(TimeSpan.FromSeconds(20), Ct);
            }
        };
        return (held.Task, release);
    }

    private string PlainResult(string id) =>
        JsonSerializer.Serialize(new { task_id = id, proplet_id = _propletId, results = "42", error = (string?)null, attempt = 1 });

    /// <summary>A simulated proplet (<see cref="ConnectAsync"/>) that reported holding nothing and beats until its
    /// heartbeats are disposed, returned once the manager has it alive.</summary>
    private async Task<(BrokerConnection Proplet, HeartbeatLoop Heartbeats)> BeatingAsync(Channel<JsonElement> starts)
    {
        var proplet = await ConnectAsync(starts);
        await ReportAsync(proplet, []);
        var heartbeats = HeartbeatLoop.Start(proplet, Base, _propletId, Ct);
        await ManagerWaits.AliveAsync(Http, _propletId);
        return (proplet, heartbeats);
    }

    private string Result(string id, string? results, string? error, bool running) =>
        JsonSerializer.Serialize(new { task_id = id, proplet_id = _propletId, results, error, attempt = 1, running });

    /// <summary>Another client (not the proplet) subscribed to the start topic: what the manager publishes there goes
    /// to <paramref name="observed"/>, whether or not the proplet is connected.</summary>
    private async Task<BrokerConnection> ObserveStartsAsync(Channel<JsonElement> observed)
    {
        var client = new BrokerConnection(new BrokerOptions { ClientId = "observer-" + _propletId, CleanStart = true }.WithAddress(Broker))
        {
            Handler = Inbox.Each((message, _) =>
            {
                observed.Writer.TryWrite(JsonDocument.Parse(message.Payload).RootElement.Clone());
                return ValueTask.CompletedTask;
            }),
        };
        await client.StartAsync(Ct);
        await client.SubscribeAsync($"{Base}/control/manager/start", MqttQualityOfServiceLevel.AtLeastOnce, Ct);
        return client;
    }

    /// <summary>Sends a report of what the proplet holds (<paramref name="report"/>) and waits until its reconciliation has
    /// committed (the proplet's held report time moves on, in the transaction that records and sends what it resends).</summary>
    private async Task ReconciledAsync(Func<Task> report)
    {
        var before = await HeldReportedAtAsync();
        await report();
        await ManagerWaits.UntilAsync(async () => await HeldReportedAtAsync() is { } at && (before is null || at > before), "the report reconciled", detail: _server.Warnings.ToString);
    }

    private async Task<DateTimeOffset?> HeldReportedAtAsync()
    {
        await using var session = _server.Services.GetRequiredService<Marten.IDocumentStore>().QuerySession();
        var key = WolverineStreams.Key(PropletAggregate.StreamId(new PropletId(_propletId)));
        return (await PropletLiveness.LoadAsync(session, key, Ct))?.HeldReportedAt;
    }

    private bool Logged(string text)
    {
        lock (_scheduling.Lines)
        {
            return _scheduling.Lines.Any(line => line.Contains(text, StringComparison.Ordinal));
        }
    }

    /// <summary>A simulated proplet with a clean session (its start messages to <paramref name="starts"/>, stops to <see cref="_stops"/> once subscribed).</summary>
    private async Task<BrokerConnection> ConnectAsync(Channel<JsonElement> starts)
    {
        var client = new BrokerConnection(new BrokerOptions { ClientId = _propletId, CleanStart = true }.WithAddress(Broker))
        {
            Handler = Inbox.Each((message, _) =>
            {
                var payload = JsonDocument.Parse(message.Payload).RootElement.Clone();
                if (message.Topic.EndsWith("/stop", StringComparison.Ordinal))
                {
                    _stops.Writer.TryWrite(payload);
                }
                else
                {
                    starts.Writer.TryWrite(payload);
                }

                return ValueTask.CompletedTask;
            }),
        };
        await client.StartAsync(Ct);
        await client.SubscribeAsync($"{Base}/control/manager/start", MqttQualityOfServiceLevel.AtLeastOnce, Ct);
        return client;
    }

    private Task ReportAsync(BrokerConnection proplet, IEnumerable<(string Id, int Attempt)> held, bool? sessionPresent = null) =>
        PublishAsync(proplet, "control/proplet/create", JsonSerializer.Serialize(new
        {
            proplet_id = _propletId,
            @namespace = "default",
            metadata = new { hostname = "sim" },
            tasks = held.Select(h => new { task_id = h.Id, attempt = h.Attempt }),
            session_present = sessionPresent,
        }));

    private async Task PublishAsync(BrokerConnection client, string path, string payload) =>
        await client.PublishAsync($"{Base}/{path}", Encoding.UTF8.GetBytes(payload), MqttQualityOfServiceLevel.AtLeastOnce, Ct);

    private async Task<string> CreateAndStartAsync()
    {
        var created = await Http.PostAsync("/tasks", new StringContent("""{"name":"main"}""", Encoding.UTF8, "application/json"), Ct);
        var id = (await created.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("id").GetString()!;
        (await Http.PostAsync($"/tasks/{id}/start", null, Ct)).EnsureSuccessStatusCode();
        return id;
    }

    private async Task<List<string>> TypesAsync(string id) =>
        [.. (await Http.GetFromJsonAsync<JsonElement>($"/tasks/{id}/history", Ct)).EnumerateArray().Select(e => e.GetProperty("type").GetString()!)];

    private async Task<JsonElement> NextAsync(Channel<JsonElement> source)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        timeout.CancelAfter(TimeSpan.FromSeconds(20));
        try
        {
            return await source.Reader.ReadAsync(timeout.Token);
        }
        catch (OperationCanceledException ex) when (!Ct.IsCancellationRequested)
        {
            throw new TimeoutException($"nothing arrived in 20 s; the manager's warnings: {_server.Warnings}", ex);
        }
    }
}
