using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Marten;
using Microsoft.Extensions.DependencyInjection;
using MQTTnet.Protocol;
using Propeller.Broker;
using Propeller.Broker.Tests;
using Propeller.Application.EventStore;
using Propeller.Application.Proplets;
using Propeller.Infrastructure.MartenStore;
using Propeller.Infrastructure.Wolverine;
using Propeller.Infrastructure.Scheduling;
using Propeller.Manager.Wolverine;
using Wolverine;
using Wolverine.Runtime;

namespace Propeller.Manager.Tests.Wolverine;

/// <summary>
/// Scheduling on the Wolverine pipeline (ADR 0014, decision 13) on real PostgreSQL and mosquitto, with no polling loop:
/// a waiting task placed by the scheduled sweep when no event announces its proplet, a sweep that reads every waiting
/// task page by page, liveness timers that mark a silent proplet offline and re-dispatch its task (then fail it at the
/// limit), and dead letters listed and replayed (decision 14).
/// </summary>
public sealed class SchedulingOnWolverineTests : IAsyncLifetime
{
    private readonly string _tenant = "s" + Guid.NewGuid().ToString("N")[..12];
    private readonly FirstDispatchFails _failover = new(() =>
        new InvalidOperationException("Marten's wrapper", new Npgsql.NpgsqlException("PostgreSQL went away, for the test", new System.Net.Sockets.SocketException(104))));
    /// <summary>
    /// The liveness window of most tests, in seconds: short, so that a silent proplet goes offline soon, yet 13 heartbeats
    /// of <see cref="BeatAsync"/> long, so that a beating proplet is not taken offline because the test process stalled
    /// (a GC pause, the thread pool on a loaded machine) for a second or two.
    /// </summary>
    private const int WindowSeconds = 4;

    private readonly HeartbeatAfterRead _heartbeatAfterRead = new();
    private ManagerServer _server = null!;

    private string Base => $"m/{_tenant}/c/ch";

    private static string Broker => Environment.GetEnvironmentVariable("PROPELLER_TEST_MQTT") is { Length: > 0 } value ? value : "tcp://127.0.0.1:51883";

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private HttpClient Http => _server.Client;

    /// <summary>A schema per test (each keeps its evidence after a failure): wolverine_scheduling_{the test's initials}.</summary>
    private static string Schema => "wolverine_scheduling_" + new string([.. (TestContext.Current.TestMethod?.MethodName ?? "x").Where(char.IsUpper)]).ToLowerInvariant();

    public async ValueTask InitializeAsync() => _server = await ManagerServer.StartAsync(Schema, new Dictionary<string, string>
    {
        ["MANAGER_MQTT_ADDRESS"] = Broker,
        ["MANAGER_TENANT_ID"] = _tenant,
        ["MANAGER_CHANNEL_ID"] = "ch",
        ["MANAGER_ENTITY_ID"] = "manager-" + _tenant,
        ["MANAGER_MQTT_QOS"] = "1",
        // Long where a test wants a proplet discovered but never heard from left online (not alive, no event when it is).
        ["MANAGER_PROPLET_LIVENESS_WINDOW"] = TestContext.Current.TestMethod?.MethodName == nameof(GivenADeadSweepChain_WhenAPropletIsAliveByItsHeartbeatsAlone_ThenTheWaitingTaskIsPlaced) ? "60s" : $"{WindowSeconds}s",
        ["MANAGER_SCHEDULER_POLICY"] = TestContext.Current.TestMethod?.MethodName == nameof(GivenAnOfflinePropletsTasks_WhenTheyArePlacedAgain_ThenTheHighestPriorityTakesTheLeastLoadedProplet) ? "least-loaded" : "round-robin",
        ["MANAGER_PROPLET_RECONNECT_ALLOWANCE"] = "1ms",
        ["MANAGER_MAX_REDISPATCHES"] = "1",

        // Longer than a run lost by silence takes (the liveness window) only where a test wants the count started afresh.
        ["MANAGER_REDISPATCH_RESET_AFTER"] = TestContext.Current.TestMethod?.MethodName == nameof(ASilentProplet_AfterTheResetTime_ItsTaskIsRedispatchedAsIfForTheFirstTime) ? "1s" : "10m",
    }, services: s =>
    {
        Marten.MartenServiceCollectionExtensions.ConfigureMarten(s, o => o.Listeners.Add(_failover));

        // Pages of two, so that a sweep's round has several pages with a handful of tasks.
        s.PostConfigure<SchedulerOptions>(o => o.BatchSize = 2);

        // A heartbeat recorded right after the liveness check's read of the proplet, where a test wants that read stale.
        if (TestContext.Current.TestMethod?.MethodName == nameof(GivenAHeartbeatRecordedAfterTheLivenessChecksRead_WhenTheCheckFindsTheProplet_ThenItStaysOnline))
        {
            s.AddSingleton(_heartbeatAfterRead);
            s.AddSingleton<IPropletRegistry>(sp => _heartbeatAfterRead.Around(ActivatorUtilities.CreateInstance<MartenPropletRegistry>(sp)));
        }

        // An idle chain far off where a test tells a re-dispatch that comes soon from one that waits for the idle link.
        if (TestContext.Current.TestMethod?.MethodName == nameof(AProplet_MarkedOfflineBySilence_ATaskDispatchedToItJustAfter_IsRedispatchedSoon))
        {
            s.PostConfigure<SchedulerOptions>(o => o.IdleSweepInterval = TimeSpan.FromMinutes(5));
        }

        // The check of the sweep chain (SweepChainWatch) every 2 s where a test kills the chain.
        if (TestContext.Current.TestMethod?.MethodName == nameof(GivenADeadSweepChain_WhenAPropletIsAliveByItsHeartbeatsAlone_ThenTheWaitingTaskIsPlaced))
        {
            s.PostConfigure<SchedulerOptions>(o => o.IdleSweepInterval = TimeSpan.FromSeconds(2));
        }
    });

    public ValueTask DisposeAsync() => _server.DisposeAsync();

    [Fact]
    public Task AWaitingTask_IsPlacedByTheScheduledSweep_WhenNoEventAnnouncesItsProplet() => SweepPlacesAWaitingTaskAsync();

    /// <summary>
    /// The sweep's link that would place the task fails on PostgreSQL (a failover, as Marten passes it on): the link is
    /// tried again instead of becoming a dead letter, so the chain goes on and the task is placed.
    /// </summary>
    [Fact]
    public Task AWaitingTask_IsPlacedByTheScheduledSweep_WhenPostgreSQLFailsTheSweepsFirstTry() => SweepPlacesAWaitingTaskAsync(failFirstTry: true);

    private async Task SweepPlacesAWaitingTaskAsync(bool failFirstTry = false)
    {
        var id = await CreateAndStartAsync("""{"name":"main"}""");
        (await WaitForEventAsync(id, "task.dispatch_deferred.v1")).GetProperty("data").GetProperty("reason").GetString().ShouldBe("no active proplets available");

        // Discovered (an event: a sweep runs, but the proplet has never been heard from, so it is not alive and the
        // task keeps waiting); then its heartbeats, which are no events at all: only the scheduled sweep sees them.
        var propletId = Guid.NewGuid().ToString();
        await using var proplet = await ConnectPropletAsync(propletId, answer: true);
        await PublishAsync(proplet, "control/proplet/create", new { proplet_id = propletId, metadata = new { tags = new[] { "sim" } } });
        await WaitForPropletAsync(propletId);
        if (failFirstTry)
        {
            _failover.Arm();
        }

        using var heartbeats = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var beating = BeatAsync(proplet, propletId, heartbeats.Token);

        var task = await WaitForStateAsync(id, 3);
        await heartbeats.CancelAsync();
        await beating;
        _failover.Fired.ShouldBe(failFirstTry);
        task.GetProperty("state").GetInt32().ShouldBe(3);
        task.GetProperty("proplet_id").GetString().ShouldBe(propletId);
        var dispatched = await WaitForEventAsync(id, "task.dispatched.v1");
        dispatched.GetProperty("user_id").GetString().ShouldBe("system");

        // One sweep chain, whatever triggered sweeps: one timer document; at most the live link and one replaced link
        // (the idle link scheduled at start, replaced when the task began to wait, stops when it fires).
        (await CountAsync($"select count(*) from {Schema}.mt_doc_scheduler_timer where id = 'sweep'")).ShouldBe(1);
        (await CountAsync($"select count(*) from {Schema}.wolverine_incoming_envelopes where status = 'Scheduled' and message_type like '%SweepWaitingTasks%'")).ShouldBeInRange(1, 2);
    }

    /// <summary>
    /// A link of the sweep chain fails for good (not on PostgreSQL: no retry) and becomes a dead letter, which ends the
    /// chain: each link schedules the next in its own transaction. Its timer is then due longer ago than the grace. The
    /// proplet the task waits for was discovered before and now only beats (heartbeats raise no event), so no event
    /// replaces the chain: the periodic check (SweepChainWatch, every idle interval) does, and its sweep places the task.
    /// Without it the task waited until some proplet event came.
    /// </summary>
    [Fact]
    public async Task GivenADeadSweepChain_WhenAPropletIsAliveByItsHeartbeatsAlone_ThenTheWaitingTaskIsPlaced()
    {
        var scheduling = _server.Services.GetRequiredService<WolverineScheduling>();
        var store = _server.Services.GetRequiredService<Marten.IDocumentStore>();
        var id = await CreateAndStartAsync("""{"name":"main"}""");
        await WaitForEventAsync(id, "task.dispatch_deferred.v1");
        var propletId = Guid.NewGuid().ToString();
        await using var proplet = await ConnectPropletAsync(propletId, answer: true);
        await PublishAsync(proplet, "control/proplet/create", new { proplet_id = propletId });
        await WaitForPropletAsync(propletId);

        // The chain's next link fails until it is a dead letter.
        scheduling.LinkLookedHook = (_, _) => throw new InvalidOperationException("a link of the sweep chain that fails for good, for the test");
        await WaitForAsync(async () => (await Http.GetFromJsonAsync<JsonElement>("/dead-letters", Ct)).GetProperty("dead_letters").EnumerateArray()
            .FirstOrDefault(l => l.GetProperty("message_type").GetString()!.Contains("sweep", StringComparison.OrdinalIgnoreCase)) is { ValueKind: JsonValueKind.Object } l ? l : (JsonElement?)null);
        scheduling.LinkLookedHook = null;

        // As it is once the grace has passed (a minute: not waited for here): due long ago, no message on its way.
        await using (var session = store.LightweightSession())
        {
            var timer = (await session.LoadAsync<SchedulerTimer>(WolverineScheduling.SweepTimerId, Ct))!;
            timer.DueAt = DateTimeOffset.UtcNow.AddMinutes(-2);
            session.Store(timer);
            await session.SaveChangesAsync(Ct);
        }

        using var heartbeats = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var beating = BeatAsync(proplet, propletId, heartbeats.Token);
        var task = await WaitForStateAsync(id, 3);
        await heartbeats.CancelAsync();
        await beating;
        task.GetProperty("proplet_id").GetString().ShouldBe(propletId);
    }

    /// <summary>
    /// A proplet holding a priority-10 and a priority-90 task goes offline; least-loaded placement, two proplets alive:
    /// "z…" runs nothing, "a…" runs one task. The re-dispatched tasks are placed highest priority first, as the sweep
    /// places waiting tasks: the priority-90 task takes "z…", the other one then ties and takes "a…" (the first by id).
    /// They were placed in id order (the priority-10 task was created first), so the priority-10 task took the least
    /// loaded proplet.
    /// </summary>
    [Fact]
    public async Task GivenAnOfflinePropletsTasks_WhenTheyArePlacedAgain_ThenTheHighestPriorityTakesTheLeastLoadedProplet()
    {
        var gone = Guid.NewGuid().ToString();
        await using var leaving = await ConnectPropletAsync(gone, answer: false);
        await PublishAsync(leaving, "control/proplet/create", new { proplet_id = gone });
        using var leavingBeats = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var leavingBeating = BeatAsync(leaving, gone, leavingBeats.Token);
        await WaitForAliveAsync(gone);
        var low = await CreateAndStartAsync("""{"name":"low","priority":10}""");
        await Task.Delay(10, Ct); // a later millisecond: a later version-7 id
        var high = await CreateAndStartAsync("""{"name":"high","priority":90}""");
        string.CompareOrdinal(low, high).ShouldBeLessThan(0, "id order must put the priority-10 task first");
        (await WaitForStateAsync(low, 2)).GetProperty("proplet_id").GetString().ShouldBe(gone);
        (await WaitForStateAsync(high, 2)).GetProperty("proplet_id").GetString().ShouldBe(gone);

        var idle = "z-" + Guid.NewGuid();
        var busy = "a-" + Guid.NewGuid();
        await using var idleProplet = await ConnectPropletAsync(idle, answer: false);
        await using var busyProplet = await ConnectPropletAsync(busy, answer: false);
        await PublishAsync(idleProplet, "control/proplet/create", new { proplet_id = idle });
        await PublishAsync(busyProplet, "control/proplet/create", new { proplet_id = busy });
        using var heartbeats = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var beating = Task.WhenAll(BeatAsync(idleProplet, idle, heartbeats.Token), BeatAsync(busyProplet, busy, heartbeats.Token));
        await WaitForAliveAsync(idle);
        await WaitForAliveAsync(busy);
        var pinned = await CreateAndStartAsync($$"""{"name":"pinned","proplet_id":"{{busy}}"}""");
        (await WaitForStateAsync(pinned, 2)).GetProperty("proplet_id").GetString().ShouldBe(busy);

        await leavingBeats.CancelAsync();
        await leavingBeating;
        await PublishAsync(leaving, "control/proplet/alive", new { proplet_id = gone, status = "offline" });
        var placed = await WaitForAsync(async () => await Http.GetFromJsonAsync<JsonElement>($"/tasks/{high}", Ct) is var t && t.TryGetProperty("proplet_id", out var on) && on.GetString() != gone ? t : (JsonElement?)null);
        var lowPlaced = await WaitForAsync(async () => await Http.GetFromJsonAsync<JsonElement>($"/tasks/{low}", Ct) is var t && t.TryGetProperty("proplet_id", out var on) && on.GetString() != gone ? t : (JsonElement?)null);
        await heartbeats.CancelAsync();
        await beating;

        (placed.GetProperty("proplet_id").GetString(), lowPlaced.GetProperty("proplet_id").GetString()).ShouldBe((idle, busy));
    }

    /// <summary>
    /// A proplet announcing the id "broadcast" (the marker a broadcast task's dispatch names) is refused: malformed,
    /// logged and acknowledged, not registered; its Last Will re-dispatches nothing. It was registered, counted the
    /// running broadcast tasks as its own, and its Last Will re-dispatched every one of them. A second proplet's Last
    /// Will, published after, is the barrier: its own task is re-dispatched by then. A third proplet beats throughout, so
    /// that the broadcast task is not re-dispatched for having no proplet left (SweepAsync).
    /// </summary>
    [Fact]
    public async Task GivenAPropletCalledBroadcast_WhenItIsDiscoveredBeatsAndLeaves_ThenItIsRefused_AndNoBroadcastTaskMoves()
    {
        var propletId = Guid.NewGuid().ToString();
        var keeperId = Guid.NewGuid().ToString();
        await using var proplet = await ConnectPropletAsync(propletId, answer: false);
        await using var keeper = await ConnectPropletAsync(keeperId, answer: false);
        await PublishAsync(proplet, "control/proplet/create", new { proplet_id = propletId });
        await PublishAsync(keeper, "control/proplet/create", new { proplet_id = keeperId });
        using var heartbeats = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        using var keeperBeats = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var beating = BeatAsync(proplet, propletId, heartbeats.Token);
        var keeperBeating = BeatAsync(keeper, keeperId, keeperBeats.Token);
        await WaitForAliveAsync(propletId);
        await WaitForAliveAsync(keeperId);
        var everywhere = await CreateAndStartAsync("""{"name":"main","file":"AGFzbQEAAAABBwFgAn9/AX8DAgEABwgBBG1haW4AAAoJAQcAIAAgAWoL","broadcast":true}""");
        var own = await CreateAndStartAsync($$"""{"name":"own","proplet_id":"{{propletId}}"}""");
        await WaitForStateAsync(everywhere, 2);
        (await WaitForStateAsync(own, 2)).GetProperty("proplet_id").GetString().ShouldBe(propletId);

        await PublishAsync(proplet, "control/proplet/create", new { proplet_id = "broadcast", tasks = Array.Empty<object>() });
        await PublishAsync(proplet, "control/proplet/alive", new { proplet_id = "broadcast", status = "alive" });
        await WaitForAsync(() => Task.FromResult(_server.Warnings.ToString().Split("is the broadcast marker").Length > 2 ? default(JsonElement) : (JsonElement?)null));
        (await Http.GetAsync("/proplets/broadcast", Ct)).StatusCode.ShouldBe(HttpStatusCode.NotFound);
        await PublishAsync(proplet, "control/proplet/alive", new { proplet_id = "broadcast", status = "offline" });

        await heartbeats.CancelAsync();
        await beating;
        await PublishAsync(proplet, "control/proplet/alive", new { proplet_id = propletId, status = "offline" });
        await WaitForEventAsync(own, "task.redispatch_requested.v1");

        var types = (await Http.GetFromJsonAsync<JsonElement>($"/tasks/{everywhere}/history", Ct)).EnumerateArray().Select(e => e.GetProperty("type").GetString()).ToList();
        types.ShouldBe(["task.created.v1", "task.start_requested.v1", "task.dispatched.v1"]);
        (await Http.GetFromJsonAsync<JsonElement>($"/tasks/{everywhere}", Ct)).GetProperty("state").GetInt32().ShouldBe(2);
        await keeperBeats.CancelAsync();
        await keeperBeating;
    }

    /// <summary>
    /// Every manager node handles a proplet's discovery, so a new proplet is registered by several at once: each starts
    /// its stream, and all but one collide (Marten's ExistingStreamIdCollisionException). The losers are decided again on
    /// the stream the winner wrote, as a lost append race is: none fails, the proplet is registered once. (Found by the
    /// chaos test with two nodes: the loser failed, logged at fail level, and its node skipped the discovery.)
    /// </summary>
    [Fact]
    public async Task ConcurrentRegistrationsOfANewProplet_AllSucceed_AndRegisterItOnce()
    {
        var inbound = _server.Services.GetRequiredService<Infrastructure.Mqtt.IInboundCommands>();
        var propletId = Guid.NewGuid().ToString();
        var at = DateTimeOffset.UtcNow;
        var rejections = await Task.WhenAll(Enumerable.Range(0, 6).Select(i => inbound.HandlePropletAsync(
            new Domain.Proplets.PropletCommand.RegisterProplet(new Domain.Proplets.PropletId(propletId), $"node-{i}", Domain.Proplets.PropletMetadata.Empty, at),
            new EventMetadata(null, null, "proplet:" + propletId, at),
            Ct)));

        rejections.ShouldAllBe(r => r == null);
        var history = await Http.GetFromJsonAsync<JsonElement>($"/proplets/{propletId}", Ct);
        history.GetProperty("id").GetString().ShouldBe(propletId);
        var store = _server.Services.GetRequiredService<Marten.IDocumentStore>();
        await using var session = store.QuerySession();
        var events = await session.Events.FetchStreamAsync(Infrastructure.Wolverine.WolverineStreams.Key(Application.Proplets.PropletAggregate.StreamId(new Domain.Proplets.PropletId(propletId))), token: Ct);
        events.Count(e => e.Data is Domain.Proplets.PropletEvent.PropletRegistered).ShouldBe(1);

        // A routine race, retried: not logged as an error (RoutineConflictLogs), as a lost append race is not.
        _server.Warnings.ToString().ShouldNotContain("ExistingStreamIdCollision");
    }

    [Fact]
    public async Task ASilentProplet_IsMarkedOffline_ItsTaskRedispatchedToAnother_ThenFailedAtTheLimit()
    {
        var id = await RedispatchToASecondPropletThatFallsSilentAsync();

        // Silent too: with MANAGER_MAX_REDISPATCHES=1 the task now fails instead of moving again.
        var failed = await WaitForStateAsync(id, 4);
        failed.GetProperty("state").GetInt32().ShouldBe(4);
        failed.GetProperty("error").GetString()!.ShouldContain("not re-dispatched (limit 1)");
        // (A re-dispatch placed before the second proplet's first heartbeat was recorded waits once: a deferral between.)
        var types = (await Http.GetFromJsonAsync<JsonElement>($"/tasks/{id}/history", Ct)).EnumerateArray().Select(e => e.GetProperty("type").GetString())
            .Where(t => t != "task.dispatch_deferred.v1").ToList();
        types.ShouldBe(["task.created.v1", "task.start_requested.v1", "task.dispatched.v1", "task.redispatch_requested.v1", "task.dispatched.v1", "task.failed.v1"]);
        (await CountAsync($"select count(*) from {Schema}.mt_events where data::text like '%no heartbeat for {WindowSeconds} s%'")).ShouldBe(2);
    }

    /// <summary>
    /// MANAGER_REDISPATCH_RESET_AFTER (1 s here, shorter than the liveness window): the second proplet's run went on
    /// long enough before it fell silent, so the re-dispatch before no longer counts: the task is re-dispatched once more
    /// (the second of a new count would fail it at MANAGER_MAX_REDISPATCHES=1) and waits for a proplet.
    /// </summary>
    [Fact]
    public async Task ASilentProplet_AfterTheResetTime_ItsTaskIsRedispatchedAsIfForTheFirstTime()
    {
        var id = await RedispatchToASecondPropletThatFallsSilentAsync();

        var again = await WaitForAsync(async () => (await Http.GetFromJsonAsync<JsonElement>($"/tasks/{id}/history", Ct)).EnumerateArray()
            .Where(e => e.GetProperty("type").GetString() == "task.redispatch_requested.v1").ToList() is { Count: 2 } both ? both[1] : (JsonElement?)null);
        var data = again.GetProperty("data");
        (data.GetProperty("redispatches").GetInt32(), data.GetProperty("counted").GetInt32()).ShouldBe((2, 1));
        var task = await Http.GetFromJsonAsync<JsonElement>($"/tasks/{id}", Ct);
        task.GetProperty("state").GetInt32().ShouldBe(1, "waiting for a proplet, not failed");
    }

    /// <summary>
    /// A proplet message whose effect waits (here another proplet's discovery behind a lock on its stream; in production
    /// a slow or overloaded PostgreSQL) holds up the messages after it once the node's receive window is full: heartbeats
    /// heard but not yet recorded. A liveness check meanwhile must not take them for silence: the node can judge silence
    /// only up to the oldest message it has not handled. It marked the beating proplet offline and re-dispatched its task.
    /// </summary>
    [Fact]
    public async Task ABeatingProplet_IsNotMarkedOffline_WhileAMessageBeforeItsHeartbeatsWaitsToBeHandled()
    {
        var propletId = Guid.NewGuid().ToString();
        await using var proplet = await ConnectPropletAsync(propletId, answer: false);
        await PublishAsync(proplet, "control/proplet/create", new { proplet_id = propletId });
        using var heartbeats = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var beating = BeatAsync(proplet, propletId, heartbeats.Token);
        await WaitForAliveAsync(propletId);
        var running = await CreateAndStartAsync("""{"name":"main"}""");
        await WaitForStateAsync(running, 2);

        // Another proplet, registered, never beating (so never checked); its stream row locked, its next discovery waits,
        // and with it (the window of 8 batches full after ~2.4 s of heartbeats) every heartbeat after it, for more than
        // two liveness windows and until a liveness check of the beating proplet has run while they waited.
        var checks = $"select count(*) from {Schema}.wolverine_incoming_envelopes where status = 'Handled' and message_type like '%CheckLiveness%' "
            + $"and position(convert_to('{propletId}', 'UTF8') in body) > 0";
        var other = Guid.NewGuid().ToString();
        await PublishAsync(proplet, "control/proplet/create", new { proplet_id = other });
        await WaitForPropletAsync(other);
        var dataSource = _server.Services.GetRequiredService<Npgsql.NpgsqlDataSource>();
        await using (var connection = await dataSource.OpenConnectionAsync(Ct))
        {
            await using var transaction = await connection.BeginTransactionAsync(Ct);
            await using (var locking = new Npgsql.NpgsqlCommand($"select 1 from {Schema}.mt_streams where id = '{other}' for update", connection, transaction))
            {
                (await locking.ExecuteScalarAsync(Ct)).ShouldBe(1);
            }

            await PublishAsync(proplet, "control/proplet/create", new { proplet_id = other, metadata = new { os = "changed" } });
            await WaitForAsync(async () => await StalledSecondsAsync() > WindowSeconds ? default(JsonElement) : (JsonElement?)null);
            var checkedBefore = await CountAsync(checks);
            await WaitForAsync(async () => await StalledSecondsAsync() > 2 * WindowSeconds && await CountAsync(checks) > checkedBefore ? default(JsonElement) : (JsonElement?)null);
            (await Http.GetFromJsonAsync<JsonElement>($"/proplets/{propletId}", Ct)).GetProperty("alive").GetBoolean().ShouldBeFalse("its heartbeats wait");
            await transaction.RollbackAsync(Ct);
        }

        await WaitForAliveAsync(propletId); // the heartbeats that waited are handled
        await heartbeats.CancelAsync();
        await beating;

        (await CountAsync($"select count(*) from {Schema}.mt_events where stream_id = '{propletId}' and data::text like '%no heartbeat for%'")).ShouldBe(0);
        var types = (await Http.GetFromJsonAsync<JsonElement>($"/tasks/{running}/history", Ct)).EnumerateArray().Select(e => e.GetProperty("type").GetString()).ToList();
        types.ShouldBe(["task.created.v1", "task.start_requested.v1", "task.dispatched.v1"]);
    }

    /// <summary>
    /// A task taken by a proplet that falls silent after one heartbeat, re-dispatched to a second that beats while the
    /// first goes silent, takes it, never answers and falls silent too. Returns the task's id once it runs on the second.
    /// </summary>
    private async Task<string> RedispatchToASecondPropletThatFallsSilentAsync()
    {
        // The first proplet takes the task and falls silent after one heartbeat.
        var first = Guid.NewGuid().ToString();
        await using var silent = await ConnectPropletAsync(first, answer: false);
        await PublishAsync(silent, "control/proplet/create", new { proplet_id = first });
        await PublishAsync(silent, "control/proplet/alive", new { proplet_id = first, status = "alive" });
        await WaitForAliveAsync(first);
        var id = await CreateAndStartAsync("""{"name":"main"}""");
        (await WaitForStateAsync(id, 2)).GetProperty("proplet_id").GetString().ShouldBe(first);

        // The second one is alive while the first goes silent; it takes the task, never answers, and falls silent too.
        var second = Guid.NewGuid().ToString();
        await using var other = await ConnectPropletAsync(second, answer: false);
        await PublishAsync(other, "control/proplet/create", new { proplet_id = second });
        using var heartbeats = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var beating = BeatAsync(other, second, heartbeats.Token);
        var redispatched = await WaitForAsync(async () => await Http.GetFromJsonAsync<JsonElement>($"/tasks/{id}", Ct) is var t && t.TryGetProperty("proplet_id", out var on) && on.GetString() == second ? t : (JsonElement?)null);
        await heartbeats.CancelAsync();
        await beating;
        redispatched.GetProperty("state").GetInt32().ShouldBe(2);
        var offline = await Http.GetFromJsonAsync<JsonElement>($"/proplets/{first}", Ct);
        offline.GetProperty("alive").GetBoolean().ShouldBeFalse();
        return id;
    }

    /// <summary>
    /// A proplet's re-dispatch handled late (retried after a failure, replayed from the dead letters) finds the proplet
    /// back online with a task given to it since: that task stays where it runs; only a task dispatched by the time the
    /// proplet went away moves. It re-dispatched whatever the proplet ran at handling time, so the task ran twice.
    /// </summary>
    [Fact]
    public async Task ALateRedispatch_OfAPropletBackOnline_LeavesTheTasksGivenToItSince()
    {
        var propletId = Guid.NewGuid().ToString();
        await using var proplet = await ConnectPropletAsync(propletId, answer: false);
        await PublishAsync(proplet, "control/proplet/create", new { proplet_id = propletId });
        using var heartbeats = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var beating = BeatAsync(proplet, propletId, heartbeats.Token);
        try
        {
            await WaitForAliveAsync(propletId);
            var id = await CreateAndStartAsync("""{"name":"main"}""");
            (await WaitForStateAsync(id, 2)).GetProperty("proplet_id").GetString().ShouldBe(propletId);
            var bus = new MessageBus(_server.Services.GetRequiredService<IWolverineRuntime>());

            // Went offline a minute before the task was dispatched (then came back): the task is the proplet's own now.
            await bus.InvokeAsync(new RedispatchTasksOf(propletId, "late", DateTimeOffset.UtcNow.AddMinutes(-1)), Ct);
            // A message from before the field (no time): the proplet is online, so nothing of it moves either.
            await bus.InvokeAsync(new RedispatchTasksOf(propletId, "late, no time"), Ct);
            var history = await Http.GetFromJsonAsync<JsonElement>($"/tasks/{id}/history", Ct);
            history.EnumerateArray().Select(e => e.GetProperty("type").GetString()).ShouldNotContain("task.redispatch_requested.v1");
            (await Http.GetFromJsonAsync<JsonElement>($"/tasks/{id}", Ct)).GetProperty("state").GetInt32().ShouldBe(2);

            // Went offline after the dispatch: the task was running there when the proplet went away, so it moves.
            await bus.InvokeAsync(new RedispatchTasksOf(propletId, "went offline after the dispatch", DateTimeOffset.UtcNow), Ct);
            (await WaitForEventAsync(id, "task.redispatch_requested.v1")).GetProperty("data").GetProperty("reason").GetString().ShouldBe("went offline after the dispatch");
        }
        finally
        {
            await heartbeats.CancelAsync();
            await beating;
        }
    }

    /// <summary>
    /// A round whose further pages are still queued when the next sweep runs (a backlog that one sweep interval cannot
    /// place) makes that round stop at its first page; once the pages are placed, rounds queue theirs again. Every
    /// round queued all its pages, so the durable queue grew by a round every second and never drained.
    /// </summary>
    [Fact]
    public async Task ASweep_WhileTheRoundBeforeStillHasPagesQueued_QueuesNoMorePages()
    {
        var scheduling = _server.Services.GetRequiredService<WolverineScheduling>();
        var held = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        scheduling.SweepPageHook = token => held.Task.WaitAsync(token);
        const string Pages = "message_type like '%PlaceSweepPage%'";
        try
        {
            // Six tasks wait (no proplet); pages of two: a round places its first page and queues the others.
            for (var i = 0; i < 6; i++)
            {
                await CreateAndStartAsync("""{"name":"main"}""");
            }

            await WaitForAsync(async () => await CountAsync($"select count(*) from {Schema}.wolverine_incoming_envelopes where {Pages}") > 0 ? default(JsonElement) : (JsonElement?)null);

            // Held, the pages stay queued; three more sweeps (one a second while tasks wait) queue none.
            var queued = await CountAsync($"select count(*) from {Schema}.wolverine_incoming_envelopes where {Pages}");
            var sweeps = await SweepsAsync();
            await WaitForAsync(async () => await SweepsAsync() >= sweeps + 3 ? default(JsonElement) : (JsonElement?)null);
            (await CountAsync($"select count(*) from {Schema}.wolverine_incoming_envelopes where {Pages}")).ShouldBe(queued);
        }
        finally
        {
            held.TrySetResult();
        }

        // Released: the pages are placed, and the rounds after queue theirs again.
        var placed = await CountAsync($"select count(*) from {Schema}.wolverine_incoming_envelopes where {Pages}");
        await WaitForAsync(async () => await CountAsync($"select count(*) from {Schema}.wolverine_incoming_envelopes where {Pages}") > placed ? default(JsonElement) : (JsonElement?)null);
    }

    private Task<long> SweepsAsync() =>
        CountAsync($"select count(*) from {Schema}.wolverine_incoming_envelopes where status = 'Handled' and message_type like '%SweepWaitingTasks%'");

    /// <summary>
    /// A start handled late (a dead letter replayed after the broker was down, a dead node's envelope recovered) goes
    /// out only while it still starts the task's current attempt: after the task was stopped it is dropped, logged and
    /// counted. It was published as it was, so the proplet ran an attempt the manager had given up.
    /// </summary>
    [Fact]
    public async Task ALateStart_GoesOutWhileItsAttemptIsCurrent_AndIsDroppedOnceTheTaskMovedOn()
    {
        await WithLateStartsCheckedAsync(async (propletId, _, starts) =>
        {
            var id = await CreateAndStartAsync("""{"name":"main"}""");
            (await WaitForStateAsync(id, 2)).GetProperty("proplet_id").GetString().ShouldBe(propletId);
            var first = await WaitForAsync(() => Task.FromResult(starts.FirstOrDefault(s => s.GetProperty("id").GetString() == id) is { ValueKind: JsonValueKind.Object } s ? s : (JsonElement?)null));
            var bus = new MessageBus(_server.Services.GetRequiredService<IWolverineRuntime>());
            var late = new PublishToBroker($"{Base}/control/manager/start", Encoding.UTF8.GetBytes(first.GetRawText()), null);

            // The attempt still runs there: the late start goes out (the proplet tells a duplicate itself).
            await bus.PublishAsync(late);
            await WaitForAsync(() => Task.FromResult(starts.Count(s => s.GetProperty("id").GetString() == id) == 2 ? default(JsonElement) : (JsonElement?)null));

            // Stopped: the attempt is over, and the late start is not published.
            (await Http.PostAsync($"/tasks/{id}/stop", null, Ct)).StatusCode.ShouldBe(HttpStatusCode.OK);
            await WaitForStateAsync(id, 6);
            await bus.PublishAsync(late);
            await WaitForAsync(async () => (await Http.GetStringAsync("/metrics", Ct)).Contains("manager_late_starts_dropped", StringComparison.Ordinal) ? default(JsonElement) : (JsonElement?)null);
            await bus.PublishAsync(new PublishToBroker($"{Base}/control/manager/start", Encoding.UTF8.GetBytes("""{"id":"after"}"""), null));
            await WaitForAsync(() => Task.FromResult(starts.Any(s => s.GetProperty("id").GetString() == "after") ? default(JsonElement) : (JsonElement?)null));
            starts.Count(s => s.GetProperty("id").GetString() == id).ShouldBe(2);
        });
    }

    /// <summary>
    /// A start handled late whose task was dispatched again since (its proplet taken for gone; here back at once, so the
    /// task is Running there again at dispatch 2) is dropped: it names the same attempt and proplet, but the run it starts
    /// is one the manager gave up (its result would be ignored, and the task could run twice). Before, only the attempt
    /// and the proplet were compared, and a task Scheduled again (waiting for its pinned proplet) took a late start too.
    /// The current dispatch's start goes out.
    /// </summary>
    [Fact]
    public async Task ALateStartOfAnEarlierDispatch_IsDropped_AndTheCurrentDispatchsGoesOut()
    {
        await WithLateStartsCheckedAsync(async (propletId, _, starts) =>
        {
            var id = await CreateAndStartAsync("""{"name":"main"}""");
            JsonElement? Start(int dispatch) =>
                starts.FirstOrDefault(s => s.GetProperty("id").GetString() == id && s.GetProperty("dispatch").GetInt32() == dispatch) is { ValueKind: JsonValueKind.Object } s ? s : null;
            var first = await WaitForAsync(() => Task.FromResult(Start(1)));
            var bus = new MessageBus(_server.Services.GetRequiredService<IWolverineRuntime>());
            await bus.InvokeAsync(new RedispatchTasksOf(propletId, "taken for gone", DateTimeOffset.UtcNow), Ct);
            var second = await WaitForAsync(() => Task.FromResult(Start(2)));

            await bus.PublishAsync(new PublishToBroker($"{Base}/control/manager/start", Encoding.UTF8.GetBytes(first.GetRawText()), null));
            await WaitForAsync(async () => (await Http.GetStringAsync("/metrics", Ct)).Contains("manager_late_starts_dropped", StringComparison.Ordinal) ? default(JsonElement) : (JsonElement?)null);
            await bus.PublishAsync(new PublishToBroker($"{Base}/control/manager/start", Encoding.UTF8.GetBytes(second.GetRawText()), null));
            await WaitForAsync(() => Task.FromResult(starts.Count(s => s.GetProperty("id").GetString() == id) == 3 ? default(JsonElement) : (JsonElement?)null));
            starts.Where(s => s.GetProperty("id").GetString() == id).Select(s => s.GetProperty("dispatch").GetInt32()).ShouldBe([1, 2, 2]);
        });
    }

    /// <summary>
    /// A liveness check that read its timer before a heartbeat started a new one (the proplet came back online between
    /// the read and the commit) ends only its own timer: the new one, with its own token, stays and its chain runs on.
    /// Before, the check deleted the timer by id and the proplet was left without a liveness check until the sweep's.
    /// </summary>
    [Fact]
    public async Task ALivenessCheckThatReadAnOlderTimer_LeavesTheNewerOne()
    {
        var store = _server.Services.GetRequiredService<IDocumentStore>();
        var scheduling = _server.Services.GetRequiredService<WolverineScheduling>();
        var propletId = Guid.NewGuid().ToString();
        var newer = new SchedulerTimer { Id = SchedulerTimer.Liveness(propletId), Token = Guid.NewGuid(), DueAt = DateTimeOffset.UtcNow.AddMinutes(1) };
        await using (var session = store.LightweightSession())
        {
            session.Store(newer);
            await session.SaveChangesAsync(Ct);
        }

        var older = new SchedulerTimer { Id = newer.Id, Token = Guid.NewGuid(), DueAt = DateTimeOffset.UtcNow };
        await using (var session = store.LightweightSession())
        {
            await scheduling.CheckLivenessAsync(session, scheduling.Attach(session), older, propletId, new OutgoingMessages(), Ct);
            await session.SaveChangesAsync(Ct);
        }

        await using (var query = store.QuerySession())
        {
            (await query.LoadAsync<SchedulerTimer>(newer.Id, Ct))!.Token.ShouldBe(newer.Token);
        }

        await using (var session = store.LightweightSession())
        {
            await scheduling.CheckLivenessAsync(session, scheduling.Attach(session), newer, propletId, new OutgoingMessages(), Ct);
            await session.SaveChangesAsync(Ct);
        }

        await using (var query = store.QuerySession())
        {
            (await query.LoadAsync<SchedulerTimer>(newer.Id, Ct)).ShouldBeNull("its own check ends it (the proplet is unknown)");
        }
    }

    /// <summary>
    /// A liveness check judges silence from the proplet read outside its transaction; a heartbeat recorded after that
    /// read (a patch, no event: the stream's version does not change) made no difference, and the proplet, alive, was
    /// marked offline and its tasks re-dispatched. The check judges again from the newest heartbeat as its transaction
    /// reads it (row locked), and the proplet stays online.
    /// </summary>
    [Fact]
    public async Task GivenAHeartbeatRecordedAfterTheLivenessChecksRead_WhenTheCheckFindsTheProplet_ThenItStaysOnline()
    {
        var store = _server.Services.GetRequiredService<IDocumentStore>();
        var scheduling = _server.Services.GetRequiredService<WolverineScheduling>();
        var registry = _server.Services.GetRequiredService<IPropletRegistry>();
        var propletId = Guid.NewGuid().ToString();
        await using var proplet = await ConnectPropletAsync(propletId, answer: false);
        await PublishAsync(proplet, "control/proplet/create", new { proplet_id = propletId, metadata = new { tags = new[] { "sim" } } });
        await WaitForPropletAsync(propletId);

        // Heard from an hour ago, listening for longer: silent by that read. Then the read is followed by a heartbeat.
        var id = new Propeller.Domain.Proplets.PropletId(propletId);
        var now = DateTimeOffset.UtcNow;
        _server.Services.GetRequiredService<HeartbeatWitness>().ListeningFrom(now.AddHours(-2), () => true);
        (await registry.RecordHeartbeatAsync(id, now.AddHours(-1), Ct)).ShouldBe(false);
        _heartbeatAfterRead.Arm(id);

        var timer = new SchedulerTimer { Id = SchedulerTimer.Liveness(propletId), Token = Guid.NewGuid(), DueAt = now };
        await using (var session = store.LightweightSession())
        {
            await scheduling.CheckLivenessAsync(session, scheduling.Attach(session), timer, propletId, new OutgoingMessages(), Ct);
            await session.SaveChangesAsync(Ct);
        }

        _heartbeatAfterRead.Fired.ShouldBeTrue();
        (await registry.GetAsync(id, Ct))!.Offline.ShouldBeFalse();
        await using var query = store.QuerySession();
        var events = await query.Events.FetchStreamAsync(WolverineStreams.Key(PropletAggregate.StreamId(id)), token: Ct);
        events.ShouldNotContain(e => e.Data is Propeller.Domain.Proplets.PropletEvent.PropletWentOffline);
    }

    /// <summary>A registry whose next read of an armed proplet is followed by a heartbeat of it (recorded at the clock's
    /// now): the read the caller gets is then stale, as one taken just before a heartbeat landed.</summary>
    private sealed class HeartbeatAfterRead
    {
        private Propeller.Domain.Proplets.PropletId? _armed;

        public bool Fired { get; private set; }

        public void Arm(Propeller.Domain.Proplets.PropletId id) => _armed = id;

        public IPropletRegistry Around(IPropletRegistry inner) => new Registry(inner, this);

        private sealed class Registry(IPropletRegistry inner, HeartbeatAfterRead hook) : IPropletRegistry
        {
            public async Task<PropletView?> GetAsync(Propeller.Domain.Proplets.PropletId id, CancellationToken cancellationToken)
            {
                var view = await inner.GetAsync(id, cancellationToken);
                if (hook._armed == id)
                {
                    hook._armed = null;
                    (await inner.RecordHeartbeatAsync(id, DateTimeOffset.UtcNow, cancellationToken)).ShouldBe(false);
                    hook.Fired = true;
                }

                return view;
            }

            public Task<IReadOnlyList<PropletView>> ListAsync(CancellationToken cancellationToken) => inner.ListAsync(cancellationToken);

            public Task<PropletFleet> ListFleetAsync(CancellationToken cancellationToken) => inner.ListFleetAsync(cancellationToken);

            public Task<bool?> RecordHeartbeatAsync(Propeller.Domain.Proplets.PropletId id, DateTimeOffset at, CancellationToken cancellationToken) =>
                inner.RecordHeartbeatAsync(id, at, cancellationToken);
        }
    }

    /// <summary>
    /// A serving daemon's run goes on after its "started" result: a start of it sent late (the reconciliation's start
    /// again, retried past the check) still goes out, and a start requested over HTTP while it serves starts no second
    /// run (no new attempt, nothing published). Before, the late start was dropped (the task was not Scheduled or
    /// Running) and the HTTP start began attempt 2 elsewhere beside the run still serving.
    /// </summary>
    [Fact]
    public async Task AServingDaemon_KeepsItsLateStart_AndAStartWhileItServesStartsNoSecondRun()
    {
        await WithLateStartsCheckedAsync(async (propletId, proplet, starts) =>
        {
            var id = await CreateAndStartAsync("""{"name":"main","daemon":true}""");
            var first = await WaitForAsync(() => Task.FromResult(starts.FirstOrDefault(s => s.GetProperty("id").GetString() == id) is { ValueKind: JsonValueKind.Object } s ? s : (JsonElement?)null));
            await PublishAsync(proplet, "control/proplet/results", new { task_id = id, proplet_id = propletId, results = "started", attempt = 1, running = true });
            await WaitForStateAsync(id, 3);

            (await Http.PostAsync($"/tasks/{id}/start", null, Ct)).StatusCode.ShouldBe(HttpStatusCode.OK);
            var bus = new MessageBus(_server.Services.GetRequiredService<IWolverineRuntime>());
            await bus.PublishAsync(new PublishToBroker($"{Base}/control/manager/start", Encoding.UTF8.GetBytes(first.GetRawText()), null));
            await WaitForAsync(() => Task.FromResult(starts.Count(s => s.GetProperty("id").GetString() == id) == 2 ? default(JsonElement) : (JsonElement?)null));
            (await Http.GetFromJsonAsync<JsonElement>($"/tasks/{id}", Ct)).GetProperty("state").GetInt32().ShouldBe(3);
            (await Http.GetFromJsonAsync<JsonElement>($"/tasks/{id}/history", Ct)).EnumerateArray()
                .Count(e => e.GetProperty("type").GetString() == "task.start_requested.v1").ShouldBe(1);
            starts.Where(s => s.GetProperty("id").GetString() == id).ShouldAllBe(s => s.GetProperty("attempt").GetInt32() == 1);
        });
    }

    /// <summary>Runs <paramref name="test"/> with every start checked as a late one (CheckAfter zero) and one proplet
    /// alive (heartbeats until it returns) that records the starts it receives and answers none.</summary>
    private async Task WithLateStartsCheckedAsync(Func<string, BrokerConnection, System.Collections.Concurrent.ConcurrentQueue<JsonElement>, Task> test)
    {
        _server.Services.GetRequiredService<LateStarts>().CheckAfter = TimeSpan.Zero;
        var propletId = Guid.NewGuid().ToString();
        var starts = new System.Collections.Concurrent.ConcurrentQueue<JsonElement>();
        await using var proplet = await ConnectPropletAsync(propletId, answer: false, starts);
        await PublishAsync(proplet, "control/proplet/create", new { proplet_id = propletId });
        using var heartbeats = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var beating = BeatAsync(proplet, propletId, heartbeats.Token);
        try
        {
            await WaitForAliveAsync(propletId);
            await test(propletId, proplet, starts);
        }
        finally
        {
            await heartbeats.CancelAsync();
            await beating;
        }
    }

    /// <summary>
    /// Two tasks at priority 90 pinned to "ghost" fill the first page; a default task started while no proplet is alive
    /// waits behind them. When a proplet comes alive, the default task is placed on it (the round reads the page after
    /// the pinned ones), and the sweep does not spin on the page it cannot place: over two seconds only a handful of
    /// sweeps run (the chain's link about once a second, and those events send), not one after another. A deferral that
    /// changes nothing appends nothing, so a sweep that read the first page again at once found the same page each time.
    /// </summary>
    [Fact]
    public async Task ATaskBehindAFullPageOfUnplaceableTasks_IsPlaced_AndTheSweepDoesNotSpin()
    {
        var pinned = new List<string>();
        for (var i = 0; i < 2; i++)
        {
            var id = await CreateAndStartAsync($$"""{"name":"pinned-{{i}}","proplet_id":"ghost","priority":90}""");
            (await WaitForEventAsync(id, "task.dispatch_deferred.v1")).GetProperty("data").GetProperty("reason").GetString().ShouldBe("pinned proplet ghost is unknown");
            pinned.Add(id);
        }

        var behind = await CreateAndStartAsync("""{"name":"main"}""");
        (await WaitForEventAsync(behind, "task.dispatch_deferred.v1")).GetProperty("data").GetProperty("reason").GetString().ShouldBe("no active proplets available");

        var propletId = Guid.NewGuid().ToString();
        await using var proplet = await ConnectPropletAsync(propletId, answer: false);
        await PublishAsync(proplet, "control/proplet/create", new { proplet_id = propletId });
        using var heartbeats = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var beating = BeatAsync(proplet, propletId, heartbeats.Token);
        try
        {
            (await WaitForStateAsync(behind, 2)).GetProperty("proplet_id").GetString().ShouldBe(propletId);

            // Every sweep message, handled or still to come (Wolverine keeps handled envelopes a while).
            const string sweeps = "wolverine_incoming_envelopes where message_type like '%SweepWaitingTasks%'";
            var before = await CountAsync($"select count(*) from {Schema}.{sweeps}");
            await Task.Delay(TimeSpan.FromSeconds(2), Ct);
            (await CountAsync($"select count(*) from {Schema}.{sweeps}") - before).ShouldBeLessThanOrEqualTo(10, "sweeps sent in two seconds while two pinned tasks wait");
        }
        finally
        {
            await heartbeats.CancelAsync();
            await beating;
        }

        foreach (var id in pinned)
        {
            (await Http.GetFromJsonAsync<JsonElement>($"/tasks/{id}", Ct)).GetProperty("state").GetInt32().ShouldBe(1, "still waiting for ghost");
        }
    }

    /// <summary>
    /// A proplet marked offline by silence while nothing waits (the sweep chain idle, here 5 minutes): a task whose
    /// placement read the proplet as alive commits its dispatch just after the offline re-dispatch looked at the
    /// proplet's running tasks (done here by hand, at once after the proplet is marked offline). It is re-dispatched
    /// within seconds by the re-dispatch the check schedules OfflineRedispatchDelay and a sweep interval later. Before,
    /// only the sweep link the check brought forward could see it, a sweep interval after the check; but the sweep
    /// leaves an offline proplet alone for OfflineRedispatchDelay (2 s) after it went offline, so the link skipped it,
    /// found nothing waiting and went idle: the task stayed on the dead proplet until the idle link.
    /// </summary>
    [Fact]
    public async Task AProplet_MarkedOfflineBySilence_ATaskDispatchedToItJustAfter_IsRedispatchedSoon()
    {
        var scheduling = _server.Services.GetRequiredService<WolverineScheduling>();
        var store = _server.Services.GetRequiredService<Marten.IDocumentStore>();
        await WaitForAsync(async () =>
        {
            await using var query = store.QuerySession();
            return await query.LoadAsync<SchedulerTimer>(WolverineScheduling.SweepTimerId, Ct) is { } timer && timer.DueAt > DateTimeOffset.UtcNow.AddMinutes(1) ? default(JsonElement) : (JsonElement?)null;
        });

        // Created, not started: nothing waits, so nothing keeps the chain at the sweep interval.
        var created = await Http.PostAsync("/tasks", new StringContent("""{"name":"raced"}""", Encoding.UTF8, "application/json"), Ct);
        var id = (await created.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("id").GetString()!;

        // One heartbeat, then silence: the liveness check marks it offline about a window (WindowSeconds) later.
        var propletId = Guid.NewGuid().ToString();
        await using var proplet = await ConnectPropletAsync(propletId, answer: false);
        await PublishAsync(proplet, "control/proplet/create", new { proplet_id = propletId });
        await PublishAsync(proplet, "control/proplet/alive", new { proplet_id = propletId, status = "alive" });
        await WaitForAliveAsync(propletId);
        await WaitForOfflineAsync(propletId);

        // The placement that saw it alive commits now: started and dispatched to the offline proplet in one transaction.
        await using (var session = store.LightweightSession())
        {
            var listener = scheduling.Attach(session);
            var taskId = new Domain.Tasks.TaskId(Guid.Parse(id));
            var stream = (await WolverineStreams.FetchForWritingAsync<Domain.Tasks.TaskState>(session, [taskId.Value], Ct)).Single();
            var now = DateTimeOffset.UtcNow;
            var state = stream.Aggregate!;
            var events = new List<object>();
            foreach (var command in new Domain.Tasks.TaskCommand[] { new Domain.Tasks.TaskCommand.StartTask(taskId, now), new Domain.Tasks.TaskCommand.DispatchTask(taskId, propletId, now) })
            {
                var decision = Domain.Tasks.TaskDecider.Decide(command, state);
                decision.Rejection.ShouldBeNull();
                state = decision.Events.Aggregate(state, Domain.Tasks.TaskDecider.Evolve);
                events.AddRange(decision.Events);
            }

            listener.Append(stream, Application.Tasks.TaskAggregate.StreamId(taskId), events, state, scheduling.SystemMetadata(id));
            await session.SaveChangesAsync(Ct);
        }

        (await Http.GetFromJsonAsync<JsonElement>($"/tasks/{id}", Ct)).GetProperty("proplet_id").GetString().ShouldBe(propletId);
        (await WaitForEventAsync(id, "task.redispatch_requested.v1")).GetProperty("data").GetProperty("reason").GetString().ShouldBe($"proplet {propletId} went offline");
    }

    /// <summary>
    /// A broadcast task Running on its only proplet, which never answers, then falls silent and is marked offline: the
    /// task is re-dispatched (counted) and waits for a live proplet, as a broadcast started with none does. Before, it
    /// stayed Running for ever: it runs on no proplet whose going offline re-dispatches its tasks.
    /// </summary>
    [Fact]
    public async Task ABroadcastTask_RunningWhenItsOnlyPropletFallsSilent_IsRedispatched_AndWaits()
    {
        var propletId = Guid.NewGuid().ToString();
        await using var proplet = await ConnectPropletAsync(propletId, answer: false);
        await PublishAsync(proplet, "control/proplet/create", new { proplet_id = propletId });
        using var heartbeats = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var beating = BeatAsync(proplet, propletId, heartbeats.Token);
        await WaitForAliveAsync(propletId);
        var id = await CreateAndStartAsync("""{"name":"main","file":"AGFzbQEAAAABBwFgAn9/AX8DAgEABwgBBG1haW4AAAoJAQcAIAAgAWoL","broadcast":true}""");
        await WaitForStateAsync(id, 2);

        await heartbeats.CancelAsync();
        await beating;
        await WaitForOfflineAsync(propletId);

        (await WaitForEventAsync(id, "task.redispatch_requested.v1")).GetProperty("data").GetProperty("reason").GetString().ShouldBe("no proplet is online to run the broadcast");
        var waiting = await WaitForStateAsync(id, 1);
        waiting.GetProperty("state").GetInt32().ShouldBe(1);
        (await WaitForEventAsync(id, "task.dispatch_deferred.v1")).GetProperty("data").GetProperty("reason").GetString().ShouldBe("no active proplets available");
    }

    [Fact]
    public async Task APoisonedMessage_IsADeadLetter_ListedAndCounted_AndReplayedOnRequest()
    {
        (await Http.GetFromJsonAsync<JsonElement>("/dead-letters", Ct)).GetProperty("total").GetInt32().ShouldBe(0);

        // A start message with no topic can never be published: a dead letter at once (no retries).
        var runtime = _server.Services.GetRequiredService<IWolverineRuntime>();
        await new MessageBus(runtime).PublishAsync(new PublishToBroker("", Encoding.UTF8.GetBytes("""{"id":"poison"}"""), null));

        var letter = await WaitForAsync(async () => (await Http.GetFromJsonAsync<JsonElement>("/dead-letters", Ct)).GetProperty("dead_letters").EnumerateArray().FirstOrDefault() is { ValueKind: JsonValueKind.Object } l ? l : (JsonElement?)null);
        letter.GetProperty("message_type").GetString()!.ShouldContain("PublishToBroker", Case.Insensitive);
        letter.GetProperty("exception_type").GetString()!.ShouldContain("ArgumentException");
        letter.GetProperty("replayable").GetBoolean().ShouldBeFalse();
        letter.GetProperty("sent_at").GetString()!.ShouldEndWith("Z"); // UTC with Z, as every time the API writes
        (await Http.GetStringAsync("/metrics", Ct)).ShouldContain("wolverine_dead_letters 1");
        // It expires after MANAGER_DEAD_LETTER_RETENTION (30 days by default): the table grew for ever.
        (await CountAsync($"select count(*) from {Schema}.wolverine_dead_letters where expires between now() + interval '29 days' and now() + interval '31 days'")).ShouldBe(1);

        (await Http.PostAsync($"/dead-letters/{Guid.NewGuid()}/replay", null, Ct)).StatusCode.ShouldBe(HttpStatusCode.NotFound);
        var invalid = await Http.PostAsync("/dead-letters/nope/replay", null, Ct);
        invalid.StatusCode.ShouldBe(HttpStatusCode.BadRequest);
        (await invalid.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("error").GetString().ShouldBe("invalid dead letter id");

        // Replayed: Wolverine moves it back to its incoming envelopes and handles it again; it fails again (the topic is
        // still empty) and is a dead letter once more, counted as replayed.
        var id = letter.GetProperty("id").GetString();
        var replay = await Http.PostAsync($"/dead-letters/{id}/replay", null, Ct);
        replay.StatusCode.ShouldBe(HttpStatusCode.OK);
        (await replay.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("marked").GetInt32().ShouldBe(1);
        var again = await WaitForAsync(async () => (await Http.GetFromJsonAsync<JsonElement>("/dead-letters", Ct)).GetProperty("dead_letters").EnumerateArray()
            .FirstOrDefault(l => l.GetProperty("id").GetString() == id && l.GetProperty("replay_count").GetInt32() >= 1 && !l.GetProperty("replayable").GetBoolean()) is { ValueKind: JsonValueKind.Object } l ? l : (JsonElement?)null);
        again.GetProperty("exception_type").GetString()!.ShouldContain("ArgumentException");
    }

    /// <summary>
    /// GET /dead-letters pages by offset and limit, also from an offset inside a page, in one stable order: oldest failure
    /// first, then id. Wolverine's own query orders by execution time only (null for nearly every dead letter), so
    /// offset pages repeated some letters and skipped others; its pages are numbered from 1 (the second page was the
    /// first again, and an offset inside a page gave a short page).
    /// </summary>
    [Fact]
    public async Task DeadLetters_PageByOffsetAndLimit()
    {
        const int Letters = 15;
        var runtime = _server.Services.GetRequiredService<IWolverineRuntime>();
        for (var i = 0; i < Letters; i++)
        {
            await new MessageBus(runtime).PublishAsync(new PublishToBroker("", Encoding.UTF8.GetBytes($$"""{"id":"poison-{{i}}"}"""), null));
        }

        async Task<List<string>> IdsAsync(string query) =>
            [.. (await Http.GetFromJsonAsync<JsonElement>("/dead-letters?" + query, Ct)).GetProperty("dead_letters").EnumerateArray().Select(l => l.GetProperty("id").GetString()!)];
        await WaitForAsync(async () => await Http.GetFromJsonAsync<JsonElement>("/dead-letters", Ct) is var page && page.GetProperty("total").GetInt32() == Letters ? page : (JsonElement?)null);
        var all = await IdsAsync("limit=100");
        all.Distinct().Count().ShouldBe(Letters);
        all.ShouldBe(await OrderedDeadLettersAsync());

        // Pages of every size, from every offset, are slices of that one order: none repeats or skips a letter.
        foreach (var limit in new[] { 1, 2, 4, 7 })
        {
            var paged = new List<string>();
            for (var offset = 0; offset < Letters; offset += limit)
            {
                paged.AddRange(await IdsAsync($"offset={offset}&limit={limit}"));
            }

            paged.ShouldBe(all, $"pages of {limit}");
        }

        (await IdsAsync("offset=1&limit=2")).ShouldBe(all[1..3]);
        (await IdsAsync("offset=13&limit=3")).ShouldBe(all[13..]);
        (await IdsAsync($"offset={Letters}&limit=2")).ShouldBeEmpty();

        // A page past the end still says how many there are.
        (await Http.GetFromJsonAsync<JsonElement>("/dead-letters?offset=100&limit=2", Ct)).GetProperty("total").GetInt32().ShouldBe(Letters);
    }

    private async Task<List<string>> OrderedDeadLettersAsync()
    {
        var dataSource = _server.Services.GetRequiredService<Npgsql.NpgsqlDataSource>();
        await using var command = dataSource.CreateCommand($"select id from {Schema}.wolverine_dead_letters where archived_at is null order by coalesce(failed_at, sent_at), id");
        await using var reader = await command.ExecuteReaderAsync(Ct);
        var ids = new List<string>();
        while (await reader.ReadAsync(Ct))
        {
            ids.Add(reader.GetGuid(0).ToString());
        }

        return ids;
    }

    [Fact]
    public async Task BrokerMessages_AreMarkedHandledInBatches_AfterTheyArePublished()
    {
        // A subscriber on the topic the messages go to: each must arrive, and only then may its envelope be handled.
        var received = 0;
        await using var subscriber = new BrokerConnection(new BrokerOptions { ClientId = "sub-" + _tenant }.WithAddress(Broker))
        {
            Handler = Inbox.Each((_, _) =>
            {
                Interlocked.Increment(ref received);
                return ValueTask.CompletedTask;
            }),
        };
        await subscriber.StartAsync(Ct);
        await subscriber.SubscribeAsync($"{Base}/marks", MqttQualityOfServiceLevel.AtLeastOnce, Ct);

        // Published through the durable "broker" queue, as a command's cascaded start is; the handler hands each
        // envelope's mark to HandledEnvelopeMarks, which marks them in batches (ADR 0016 decision 7).
        const int count = 40;
        var bus = new MessageBus(_server.Services.GetRequiredService<IWolverineRuntime>());
        await Task.WhenAll(Enumerable.Range(0, count).Select(i => bus.PublishAsync(new PublishToBroker($"{Base}/marks", Encoding.UTF8.GetBytes("{\"n\":" + i + "}"), null)).AsTask()));

        await WaitForAsync(async () => await CountAsync(
            $"select count(*) from {Schema}.wolverine_incoming_envelopes where status = 'Handled' and message_type like '%PublishToBroker%'") == count ? default(JsonElement) : (JsonElement?)null);
        Volatile.Read(ref received).ShouldBe(count);
        var marks = _server.Services.GetRequiredService<HandledEnvelopeMarks>();
        marks.Marked.ShouldBe(count);
        marks.RoundTrips.ShouldBeLessThan(count);
        (await CountAsync($"select count(*) from {Schema}.wolverine_incoming_envelopes where status <> 'Handled' and message_type like '%PublishToBroker%'")).ShouldBe(0);
    }

    /// <summary>
    /// When the host begins to stop, the marks taken so far are written before any service stops (Wolverine's receivers
    /// then hand the node's envelopes back to any node: one still unmarked could be published again by another node),
    /// and later handlers' marks are left to Wolverine (their envelope is not taken as handled here).
    /// </summary>
    [Fact]
    public async Task HandledMarks_AreWrittenWhenTheHostBeginsToStop_AndLaterOnesLeftToWolverine()
    {
        var marks = _server.Services.GetRequiredService<HandledEnvelopeMarks>();
        var before = marks.Marked;
        var taken = Enumerable.Range(0, 5).Select(_ => new Envelope { Id = Guid.NewGuid(), Destination = new Uri("local://broker") }).ToList();
        taken.ForEach(marks.Add);
        taken.ShouldAllBe(e => e.Status == EnvelopeStatus.Handled);

        await marks.StoppingAsync(Ct);

        marks.Marked.ShouldBe(before + taken.Count);
        var late = new Envelope { Id = Guid.NewGuid(), Destination = new Uri("local://broker") };
        marks.Add(late);
        late.Status.ShouldNotBe(EnvelopeStatus.Handled);
    }

    private async Task<BrokerConnection> ConnectPropletAsync(string propletId, bool answer, System.Collections.Concurrent.ConcurrentQueue<JsonElement>? received = null)
    {
        BrokerConnection? client = null;
        client = new BrokerConnection(new BrokerOptions { ClientId = propletId }.WithAddress(Broker))
        {
            Handler = Inbox.Each(async (message, token) =>
            {
                var start = JsonDocument.Parse(message.Payload).RootElement;
                received?.Enqueue(start.Clone());
                if (!answer || (start.TryGetProperty("proplet_id", out var target) && target.GetString() != propletId))
                {
                    return;
                }

                var result = JsonSerializer.Serialize(new { task_id = start.GetProperty("id").GetString(), proplet_id = propletId, results = "done", error = (string?)null });
                await client!.PublishAsync($"{Base}/control/proplet/results", Encoding.UTF8.GetBytes(result), MqttQualityOfServiceLevel.AtLeastOnce, token);
            }),
        };
        await client.StartAsync(Ct);
        await client.SubscribeAsync($"{Base}/control/manager/start", MqttQualityOfServiceLevel.AtLeastOnce, Ct);
        return client;
    }

    /// <summary>Heartbeats every 300 ms until <paramref name="stop"/> (the liveness window here is <see cref="WindowSeconds"/>).</summary>
    private Task BeatAsync(BrokerConnection client, string propletId, CancellationToken stop) => Task.Run(
        async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                await PublishAsync(client, "control/proplet/alive", new { proplet_id = propletId, status = "alive" });
                await Task.Delay(300, CancellationToken.None);
            }
        },
        CancellationToken.None);

    private Task PublishAsync(BrokerConnection client, string path, object payload) =>
        client.PublishAsync($"{Base}/{path}", JsonSerializer.SerializeToUtf8Bytes(payload), MqttQualityOfServiceLevel.AtLeastOnce, CancellationToken.None);

    private async Task<string> CreateAndStartAsync(string body)
    {
        var created = await Http.PostAsync("/tasks", new StringContent(body, Encoding.UTF8, "application/json"), Ct);
        created.StatusCode.ShouldBe(HttpStatusCode.Created);
        var id = (await created.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("id").GetString()!;
        (await Http.PostAsync($"/tasks/{id}/start", null, Ct)).StatusCode.ShouldBe(HttpStatusCode.OK);
        return id;
    }

    private Task<JsonElement> WaitForStateAsync(string id, int state) =>
        WaitForAsync(async () => await Http.GetFromJsonAsync<JsonElement>($"/tasks/{id}", Ct) is var task && task.GetProperty("state").GetInt32() == state ? task : (JsonElement?)null);

    private Task<JsonElement> WaitForEventAsync(string id, string type) =>
        WaitForAsync(async () => (await Http.GetFromJsonAsync<JsonElement>($"/tasks/{id}/history", Ct)).EnumerateArray().LastOrDefault(e => e.GetProperty("type").GetString() == type) is { ValueKind: JsonValueKind.Object } e ? e : (JsonElement?)null);

    private Task WaitForPropletAsync(string propletId) =>
        WaitForAsync(async () => (await Http.GetAsync($"/proplets/{propletId}", Ct)).IsSuccessStatusCode ? default(JsonElement) : (JsonElement?)null);

    /// <summary>Waits until the proplet is marked offline (PropletWentOffline), not only past its liveness window.</summary>
    private Task WaitForOfflineAsync(string propletId)
    {
        var store = _server.Services.GetRequiredService<Marten.IDocumentStore>();
        var key = WolverineStreams.Key(Application.Proplets.PropletAggregate.StreamId(new Domain.Proplets.PropletId(propletId)));
        return WaitForAsync(async () =>
        {
            await using var query = store.QuerySession();
            return await query.LoadAsync<PropletDocument>(key, Ct) is { State.Offline: true } ? default(JsonElement) : (JsonElement?)null;
        });
    }

    private Task WaitForAliveAsync(string propletId) =>
        WaitForAsync(async () => await Http.GetAsync($"/proplets/{propletId}", Ct) is { IsSuccessStatusCode: true } response
            && (await response.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("alive").GetBoolean() ? default(JsonElement) : (JsonElement?)null);

    /// <summary>Polls <paramref name="probe"/> until it answers (30 s at most: the scheduled sweep and checks fire within seconds).</summary>
    private static async Task<JsonElement> WaitForAsync(Func<Task<JsonElement?>> probe)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (true)
        {
            if (await probe() is { } found)
            {
                return found;
            }

            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException("the expected state was not reached within 30 s");
            }

            await Task.Delay(50, Ct);
        }
    }

    /// <summary>How long the oldest message this node received and has not handled has waited (/metrics; 0 while not
    /// reported).</summary>
    private async Task<double> StalledSecondsAsync()
    {
        var stalled = (await Http.GetStringAsync("/metrics", Ct)).Split('\n')
            .SingleOrDefault(line => line.StartsWith("mqtt_receive_unhandled_seconds{", StringComparison.Ordinal) && line.Contains($"client_id=\"manager-{_tenant}\"", StringComparison.Ordinal));
        return stalled is null ? 0 : double.Parse(stalled[(stalled.LastIndexOf(' ') + 1)..], System.Globalization.CultureInfo.InvariantCulture);
    }

    private async Task<long> CountAsync(string sql)
    {
        var dataSource = _server.Services.GetRequiredService<Npgsql.NpgsqlDataSource>();
        await using var command = dataSource.CreateCommand(sql);
        return (long)(await command.ExecuteScalarAsync(Ct))!;
    }
}
