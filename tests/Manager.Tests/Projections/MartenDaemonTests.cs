using System.Net;
using System.Text;
using System.Text.Json;
using Marten.Events.Daemon.Coordination;
using Microsoft.Extensions.DependencyInjection;
using Propeller.Infrastructure.MartenStore;
using Propeller.Manager.Operations;
using Propeller.Tests.Shared;

namespace Propeller.Manager.Tests.Projections;

/// <summary>
/// Marten's async daemon in the manager (ADR 0010 step 2): each async projection's lag in /metrics, /health/ready
/// failing while one is stopped or too far behind, GET /tasks/activity, and `propeller-manager rebuild`.
/// </summary>
public sealed class MartenDaemonTests
{
    private const string Schema = "api_marten_daemon";

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static async Task CreateTasksAsync(HttpClient http, int count)
    {
        for (var i = 0; i < count; i++)
        {
            var response = await http.PostAsync("/tasks", new StringContent($$"""{"name":"t{{i}}"}""", Encoding.UTF8, "application/json"), Ct);
            response.StatusCode.ShouldBe(HttpStatusCode.Created);
        }
    }

    private static async Task<string> LagLineAsync(HttpClient http)
    {
        var metrics = await http.GetStringAsync("/metrics", Ct);
        return metrics.Split('\n').Single(l => l.StartsWith($"projection_lag_events{{projection=\"task_activity\",schema=\"{Schema}\"}}", StringComparison.Ordinal));
    }

    /// <summary>Polls until <paramref name="condition"/> holds (at most 30 s: the daemon is a background loop).</summary>
    private static async Task EventuallyAsync(Func<Task<bool>> condition, string what)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (!await condition())
        {
            DateTime.UtcNow.ShouldBeLessThan(deadline, $"timed out waiting until {what}");
            await Task.Delay(50, Ct);
        }
    }

    private static async Task<(HttpStatusCode Status, string Projections)> ReadyAsync(HttpClient http)
    {
        var response = await http.GetAsync("/health/ready", Ct);
        using var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync(Ct));
        return (response.StatusCode, body.RootElement.GetProperty("checks").GetProperty("projections").GetString()!);
    }

    /// <summary>Solo mode: this node runs Marten's daemon itself (in Balanced, the default, Wolverine assigns the projections; ADR 0014).</summary>
    private static Dictionary<string, string> Solo => new() { ["MANAGER_DURABILITY_MODE"] = "solo" };

    [Fact]
    public async Task TheDaemon_ReportsLagInMetrics_AndReadyFailsWhileAProjectionIsStoppedOrTooFarBehind()
    {
        await using var server = await ManagerServer.StartAsync(Schema, Solo);
        await CreateTasksAsync(server.Client, 3);
        await EventuallyAsync(async () => (await LagLineAsync(server.Client)).EndsWith(" 0", StringComparison.Ordinal), "task_activity caught up");
        (await server.Client.GetStringAsync("/metrics", Ct)).ShouldContain($"projection_running{{projection=\"task_activity\",schema=\"{Schema}\"}} 1");
        using (var activity = JsonDocument.Parse(await server.Client.GetStringAsync("/tasks/activity", Ct)))
        {
            activity.RootElement.GetProperty("events").GetProperty("task.created.v1").GetInt64().ShouldBe(3);
        }

        (await ReadyAsync(server.Client)).ShouldBe((HttpStatusCode.OK, "pass"));

        // Nodes that run no daemon judge the lag against their threshold, once the projection stood still for
        // MANAGER_PROJECTION_STALL_TIMEOUT (1 ms for the reader: at its next check). With the default (60 s), the
        // patient node stays ready while the projection is behind but moving, or has stood still for less: a failover's
        // lag on a busy store made every node answer 503 at once. Started before the daemon stops (it is not restarted
        // while they start).
        await using var reader = await ManagerServer.StartAsync(
            Schema, new Dictionary<string, string> { ["MANAGER_PROJECTION_MAX_LAG"] = "2", ["MANAGER_PROJECTION_STALL_TIMEOUT"] = "1ms" },
            dropSchema: false, waitUntilReady: false, runDaemon: false);
        await using var patient = await ManagerServer.StartAsync(
            Schema, new Dictionary<string, string> { ["MANAGER_PROJECTION_MAX_LAG"] = "2" }, dropSchema: false, waitUntilReady: false, runDaemon: false);
        (await ReadyAsync(reader.Client)).ShouldBe((HttpStatusCode.OK, "pass"));
        (await ReadyAsync(patient.Client)).ShouldBe((HttpStatusCode.OK, "pass"));

        // Stopped: not ready, whatever the lag.
        var daemon = server.Services.GetRequiredService<IProjectionCoordinator>().DaemonForMainDatabase();
        await daemon.StopAgentAsync("task_activity:All");
        (await ReadyAsync(server.Client)).ShouldBe((HttpStatusCode.ServiceUnavailable, "projection task_activity is stopped"));
        (await server.Client.GetStringAsync("/metrics", Ct)).ShouldContain($"projection_running{{projection=\"task_activity\",schema=\"{Schema}\"}} 0");

        // (Read from /health/ready: the hosts of this process share the meter's name, so one's /metrics may show another's sample.)
        await CreateTasksAsync(server.Client, 3);
        var behind = await ReadyAsync(reader.Client);
        behind.Status.ShouldBe(HttpStatusCode.ServiceUnavailable);
        behind.Projections.ShouldStartWith("projection task_activity is 3 events behind (more than 2) and has not moved for ");
        (await ReadyAsync(patient.Client)).ShouldBe((HttpStatusCode.OK, "pass"));

        // Started again, it catches up and both nodes are ready.
        await daemon.StartAgentAsync("task_activity:All", Ct);
        await EventuallyAsync(async () => (await ReadyAsync(reader.Client)).Status == HttpStatusCode.OK, "the reader is ready again");
        (await ReadyAsync(server.Client)).ShouldBe((HttpStatusCode.OK, "pass"));
        using var caughtUp = JsonDocument.Parse(await server.Client.GetStringAsync("/tasks/activity", Ct));
        caughtUp.RootElement.GetProperty("events").GetProperty("task.created.v1").GetInt64().ShouldBe(6);
    }

    [Fact]
    public async Task TheRebuildCommand_RebuildsOneOrEveryProjection_AndRejectsAnUnknownOne()
    {
        const string schema = Schema + "_rebuild";
        await using (var server = await ManagerServer.StartAsync(schema, Solo))
        {
            await CreateTasksAsync(server.Client, 4);
        }

        var db = await TestPostgres.ConnectionStringAsync();
        string[] settings = [$"--EventStore:ConnectionString={db}", $"--EventStore:Schema={schema}", "--MANAGER_MQTT_ADDRESS=", "--MANAGER_LOG_LEVEL=warn"];
        (await RebuildCommand.RunAsync(["no_such_view", .. settings])).ShouldBe(2);
        (await RebuildCommand.RunAsync([TaskActivityProjection.ProjectionName, .. settings])).ShouldBe(0);
        (await RebuildCommand.RunAsync(["all", .. settings])).ShouldBe(0);

        await using var after = await ManagerServer.StartAsync(schema, null, dropSchema: false, runDaemon: false);
        using var activity = JsonDocument.Parse(await after.Client.GetStringAsync("/tasks/activity", Ct));
        activity.RootElement.GetProperty("events").GetProperty("task.created.v1").GetInt64().ShouldBe(4);
        using var tasks = JsonDocument.Parse(await after.Client.GetStringAsync("/tasks", Ct));
        tasks.RootElement.GetProperty("total").GetInt64().ShouldBe(4);
    }

    /// <summary>
    /// The task view refers to the large modules the task_module documents hold (ADR 0018): rebuilding task_state
    /// rebuilds task_module first, so a view rebuilt where the modules' documents are missing (a store from before them)
    /// never refers to a module no document holds.
    /// </summary>
    [Fact]
    public async Task RebuildingTheTaskView_RebuildsTheModuleDocumentsFirst()
    {
        const string schema = Schema + "_rebuild_modules";
        var module = Convert.ToBase64String(System.Security.Cryptography.RandomNumberGenerator.GetBytes(60_000));
        string id;
        await using (var server = await ManagerServer.StartAsync(schema, Solo))
        {
            var created = await server.Client.PostAsync("/tasks", new StringContent($$"""{"name":"big","file":"{{module}}"}""", Encoding.UTF8, "application/json"), Ct);
            id = JsonDocument.Parse(await created.Content.ReadAsStringAsync(Ct)).RootElement.GetProperty("id").GetString()!;
        }

        var db = await TestPostgres.ConnectionStringAsync();
        await using var dataSource = Npgsql.NpgsqlDataSource.Create(db);
        await using (var wipe = dataSource.CreateCommand($"delete from \"{schema}\".mt_doc_taskmodule"))
        {
            (await wipe.ExecuteNonQueryAsync(Ct)).ShouldBe(1);
        }

        // A module document no task refers to (a store written by a projection that has since changed): the rebuild
        // deletes the projection's documents before it replays (it replayed into them, and this one stayed).
        const string orphan = "00000000-0000-0000-0000-0000000000aa";
        await using (var stray = dataSource.CreateCommand(
            $"insert into \"{schema}\".mt_doc_taskmodule (id, data) values ('{orphan}', '{{\"Id\":\"{orphan}\",\"File\":\"AA==\"}}'::jsonb)"))
        {
            (await stray.ExecuteNonQueryAsync(Ct)).ShouldBe(1);
        }

        string[] settings = [$"--EventStore:ConnectionString={db}", $"--EventStore:Schema={schema}", "--MANAGER_MQTT_ADDRESS=", "--MANAGER_LOG_LEVEL=warn"];
        (await RebuildCommand.RunAsync(["task_state", .. settings])).ShouldBe(0);

        await using var read = dataSource.CreateCommand(
            $"select m.data->>'file', length(s.data::text) from \"{schema}\".mt_doc_taskmodule m join \"{schema}\".mt_doc_taskstate s on s.id = m.id where m.id = '{id}'");
        await using var row = await read.ExecuteReaderAsync(Ct);
        (await row.ReadAsync(Ct)).ShouldBeTrue("the module's document is back");
        row.GetString(0).ShouldBe(module);
        row.GetInt32(1).ShouldBeLessThan(4096, "the rebuilt view holds the reference");
        await row.DisposeAsync();
        await using var left = dataSource.CreateCommand($"select count(*) from \"{schema}\".mt_doc_taskmodule where id = '{orphan}'");
        ((long)(await left.ExecuteScalarAsync(Ct))!).ShouldBe(0, "the orphaned module document is gone");
    }

    /// <summary>
    /// A rebuild holds the schema's lock from before it looks for managers to its end: a manager starting meanwhile
    /// waits at its schema step (it applied the schema beside the rebuild, then served from deleted documents). Shown
    /// from the rebuild's side: while the lock is held (as a starting manager holds it), the rebuild waits for it. The
    /// manager's side, a start waiting for the lock beyond the command timeout, is MartenSchemaTests'.
    /// </summary>
    [Fact]
    public async Task TheRebuildCommand_TakesTheSchemasLock_WaitingWhileAnotherProcessHoldsIt()
    {
        const string schema = Schema + "_rebuild_lock";
        await using (var server = await ManagerServer.StartAsync(schema, Solo))
        {
            await CreateTasksAsync(server.Client, 2);
        }

        var db = await TestPostgres.ConnectionStringAsync();
        await using var dataSource = Npgsql.NpgsqlDataSource.Create(db);
        string[] settings = [$"--EventStore:ConnectionString={db}", $"--EventStore:Schema={schema}", "--MANAGER_MQTT_ADDRESS=", "--MANAGER_LOG_LEVEL=warn"];
        Task<int> rebuild;
        await using (await Propeller.Infrastructure.MartenStore.SchemaLock.TakeAsync(dataSource, schema, Ct))
        {
            rebuild = RebuildCommand.RunAsync([TaskActivityProjection.ProjectionName, .. settings]);
            await EventuallyAsync(
                async () =>
                {
                    await using var waiting = dataSource.CreateCommand(
                        "select count(*) from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock' and wait_event = 'advisory' and application_name = $1");
                    waiting.Parameters.Add(new Npgsql.NpgsqlParameter { Value = "propeller-manager/" + schema }); // the rebuild's, not another test's manager
                    return (long)(await waiting.ExecuteScalarAsync(Ct))! > 0;
                },
                "the rebuild waits for the schema's lock");
            rebuild.IsCompleted.ShouldBeFalse();
        }

        (await rebuild.WaitAsync(TimeSpan.FromMinutes(2), Ct)).ShouldBe(0);
    }

    /// <summary>
    /// A rebuild deletes the projection's documents before it replays: a manager running meanwhile would decide on tasks
    /// it cannot find. The command refuses while a manager holds connections on the schema (exit 2), unless --force.
    /// </summary>
    [Fact]
    public async Task TheRebuildCommand_RefusesWhileAManagerRunsOnTheSchema_UnlessForced()
    {
        const string schema = Schema + "_rebuild_live";
        await using var server = await ManagerServer.StartAsync(schema, Solo);
        await CreateTasksAsync(server.Client, 2);

        var db = await TestPostgres.ConnectionStringAsync();
        string[] settings = [$"--EventStore:ConnectionString={db}", $"--EventStore:Schema={schema}", "--MANAGER_MQTT_ADDRESS=", "--MANAGER_LOG_LEVEL=warn"];
        var refused = new StringWriter();
        (await RebuildCommand.RunAsync([TaskActivityProjection.ProjectionName, .. settings], refused)).ShouldBe(2);
        refused.ToString().ShouldContain("managers are running on this schema");

        // An unknown name is told with the registered ones, also while a manager runs (it said only that managers run).
        var unknown = new StringWriter();
        (await RebuildCommand.RunAsync(["no_such_view", .. settings], unknown)).ShouldBe(2);
        unknown.ToString().ShouldContain("no projection named 'no_such_view' (registered: ");
        unknown.ToString().ShouldContain(TaskActivityProjection.ProjectionName);

        // Forced, the views commands decide on are still refused: the managers would decide on deleted documents, and
        // the replay would overwrite a document an event of theirs wrote meanwhile.
        foreach (var view in (string[])["task_state", "proplet_view", "all"])
        {
            var forced = new StringWriter();
            (await RebuildCommand.RunAsync([view, "--force", .. settings], forced)).ShouldBe(2);
            forced.ToString().ShouldContain("--force does not rebuild");
            forced.ToString().ShouldContain(view == "proplet_view" ? "proplet_view" : "task_state");
        }
    }

    /// <summary>
    /// --force rebuilds the async activity view beside running managers (here one whose daemon does not run: a running
    /// daemon writes beside the rebuild, as the docs warn).
    /// </summary>
    [Fact]
    public async Task TheRebuildCommand_Forced_RebuildsTheActivityViewBesideARunningManager()
    {
        const string schema = Schema + "_rebuild_forced";
        await using var server = await ManagerServer.StartAsync(schema, Solo, runDaemon: false);
        await CreateTasksAsync(server.Client, 2);

        var db = await TestPostgres.ConnectionStringAsync();
        string[] settings = [$"--EventStore:ConnectionString={db}", $"--EventStore:Schema={schema}", "--MANAGER_MQTT_ADDRESS=", "--MANAGER_LOG_LEVEL=warn"];
        (await RebuildCommand.RunAsync([TaskActivityProjection.ProjectionName, "--force", "--timeout", "10m", .. settings])).ShouldBe(0);
    }

    /// <summary>
    /// A failure exits 1 with a message (it escaped as an unhandled exception: a stack trace and an abort): PostgreSQL
    /// unreachable, and a replay past --timeout; a --timeout that is not a duration is a usage error.
    /// </summary>
    [Fact]
    public async Task TheRebuildCommand_Failing_ExitsOneWithAMessage()
    {
        string[] unreachable = ["--EventStore:ConnectionString=Host=127.0.0.1;Port=1;Username=x;Password=y;Database=z;Timeout=2", "--MANAGER_MQTT_ADDRESS=", "--MANAGER_LOG_LEVEL=warn"];
        var down = new StringWriter();
        (await RebuildCommand.RunAsync(["task_state", .. unreachable], down)).ShouldBe(1);
        down.ToString().ShouldStartWith("propeller-manager rebuild: ");
        down.ToString().ShouldContain("the projection is incomplete until rebuilt again");

        var bad = new StringWriter();
        (await RebuildCommand.RunAsync(["task_state", "--timeout", "soon", .. unreachable], bad)).ShouldBe(2);
        bad.ToString().ShouldContain("--timeout takes a positive duration");
        var badJoined = new StringWriter();
        (await RebuildCommand.RunAsync(["task_state", "--timeout=soon", .. unreachable], badJoined)).ShouldBe(2);
        badJoined.ToString().ShouldContain("(got 'soon')");

        const string schema = Schema + "_rebuild_timeout";
        await using (var server = await ManagerServer.StartAsync(schema, Solo))
        {
            await CreateTasksAsync(server.Client, 2);
        }

        var db = await TestPostgres.ConnectionStringAsync();
        string[] settings = [$"--EventStore:ConnectionString={db}", $"--EventStore:Schema={schema}", "--MANAGER_MQTT_ADDRESS=", "--MANAGER_LOG_LEVEL=warn"];
        var late = new StringWriter();
        // --timeout=1ms as --timeout 1ms (the joined form was taken for a setting, and the default applied).
        (await RebuildCommand.RunAsync([TaskActivityProjection.ProjectionName, "--timeout=1ms", .. settings], late)).ShouldBe(1);
        late.ToString().ShouldContain("--timeout, now 00:00:00.0010000");
    }
}
