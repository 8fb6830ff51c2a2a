using Marten;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;
using Propeller.Application.Aggregates;
using Propeller.Application.EventStore;
using Propeller.Application.Proplets;
using Propeller.Application.Scheduling;
using Propeller.Application.Tasks;
using Propeller.Domain.Proplets;
using Propeller.Domain.Tasks;
using Propeller.Infrastructure.MartenStore;
using Propeller.Infrastructure.Tests.Support;
using static Propeller.Domain.Proplets.PropletEvent;
using static Propeller.Domain.Tasks.TaskCommand;
using static Propeller.Infrastructure.Tests.Support.TestEvents;

namespace Propeller.Infrastructure.Tests.MartenStore;

/// <summary>The task and proplet views as Marten projections (ADR 0010 step 2): metadata filter, heartbeats, PropletState.</summary>
public sealed class MartenViewTests : IAsyncLifetime
{
    private TestDatabase _db = null!;
    private DocumentStore _marten = null!;
    private MartenEventStore _store = null!;
    private StreamCommands _commands = null!;

    public async ValueTask InitializeAsync()
    {
        _db = await TestDatabase.CreateAsync("marten_views");
        (_marten, _store) = (_db.Marten, _db.Store);
        _commands = new StreamCommands(_store, new AggregateLoader(_store));
    }

    public async ValueTask DisposeAsync()
    {
        await _db.DisposeAsync();
    }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private async Task<TaskId> CreateAsync(string name, string? metadata)
    {
        var id = NewId();
        var spec = TaskSpec.Named(name) with { Metadata = metadata };
        (await _commands.HandleAsync(TaskAggregate.Decider, TaskAggregate.StreamId(id), new CreateTask(id, spec, T0), Meta(), Ct)).IsRejected.ShouldBeFalse();
        return id;
    }

    [Fact]
    public async Task MetadataFilter_FindsByContainment_AndUsesTheGinIndex()
    {
        var a = await CreateAsync("a", """{"team":"edge","tier":1}""");
        var b = await CreateAsync("b", """{"team":"edge","tier":2}""");
        await CreateAsync("c", """{"team":"cloud"}""");
        await CreateAsync("d", null);
        var deleted = await CreateAsync("e", """{"team":"edge"}""");
        await _commands.HandleAsync(TaskAggregate.Decider, TaskAggregate.StreamId(deleted), new DeleteTask(deleted, T0.AddSeconds(1)), Meta(1), Ct);
        var queries = new MartenTaskQueries(_marten);

        var edge = await queries.ListAsync(0, 10, new TaskListFilter(Metadata: """{"team":"edge"}"""), Ct);
        edge.Total.ShouldBe(2);
        edge.Tasks.Select(t => t.Id).ShouldBe([a, b]);
        (await queries.ListAsync(0, 10, new TaskListFilter(Metadata: """{"team":"edge","tier":2}"""), Ct)).Tasks.Select(t => t.Id).ShouldBe([b]);
        (await queries.ListAsync(5, 10, new TaskListFilter(Metadata: """{"team":"edge"}"""), Ct)).Total.ShouldBe(2);
        (await queries.ListAsync(0, 1, new TaskListFilter(Metadata: """{"team":"edge"}"""), Ct)).Total.ShouldBe(2); // a full page: counted
        var second = await queries.ListAsync(1, 1, new TaskListFilter(Metadata: """{"team":"edge"}"""), Ct);
        (second.Total, second.Tasks.Single().Id).ShouldBe((2, b));
        (await queries.ListAsync(0, 10, TaskListFilter.None, Ct)).Total.ShouldBe(4);
        (await queries.GetAsync(deleted, Ct)).ShouldBeNull();

        // The plan of the list's own query, with sequential scans priced out (a table this small is scanned otherwise).
        await using var session = _marten.QuerySession();
        var plan = await PlanAsync(MartenTaskQueries.Filter(session.Query<TaskState>(), new TaskListFilter(Metadata: """{"team":"edge"}""")).ToCommand());
        plan.ShouldContain($"mt_doc_taskstate_idx_{MartenTaskQueries.MetadataColumn}", customMessage: plan);
    }

    /// <summary>The view answers a replay to the stream's current version, deleted or not, and only that version.</summary>
    [Fact]
    public async Task TheView_IsTheStateAtItsStreamsVersion_AndNoOther()
    {
        var id = await CreateAsync("replayed", null);
        await _commands.HandleAsync(TaskAggregate.Decider, TaskAggregate.StreamId(id), new StartTask(id, T0.AddSeconds(1)), Meta(1), Ct);
        var queries = new MartenTaskQueries(_marten);

        (await queries.GetAtVersionAsync(id, 2, Ct)).ShouldBe(await queries.GetAsync(id, Ct));
        (await queries.GetAtVersionAsync(id, 1, Ct)).ShouldBeNull();
        (await queries.GetAtVersionAsync(id, 3, Ct)).ShouldBeNull();

        await _commands.HandleAsync(TaskAggregate.Decider, TaskAggregate.StreamId(id), new StopTask(id, "test", T0.AddSeconds(2)), Meta(2), Ct);
        await _commands.HandleAsync(TaskAggregate.Decider, TaskAggregate.StreamId(id), new DeleteTask(id, T0.AddSeconds(3)), Meta(3), Ct);
        var deleted = await queries.GetAtVersionAsync(id, 4, Ct);
        deleted.ShouldNotBeNull().Deleted.ShouldBeTrue();
        var replayed = await new AggregateLoader(_store).LoadAsync(TaskAggregate.Decider, TaskAggregate.StreamId(id), new StreamReadOptions(ToVersion: 4, IncludeArchived: true), Ct);
        deleted.ShouldBe(replayed.State);
    }

    /// <summary>
    /// The sweep's pages are read from the partial index of waiting tasks in the order's own expressions, the first page
    /// and a page after a key alike, with nothing to sort. The order read the priority and change time from the JSON,
    /// which sorted every waiting task's document for every page (seconds a page over 100,000 waiting tasks).
    /// </summary>
    [Fact]
    public async Task TheSweepsPages_AreIndexRangeReads_WithNoSort()
    {
        var id = await CreateAsync("waiting", null);
        await _commands.HandleAsync(TaskAggregate.Decider, TaskAggregate.StreamId(id), new StartTask(id, T0.AddTicks(7)), Meta(1), Ct);
        await using var session = _marten.QuerySession();
        var task = await session.LoadAsync<TaskState>(id, Ct);

        foreach (var after in new WaitingTaskKey?[] { null, WaitingTaskKey.Of(task!) })
        {
            // Keys from the columns, no document: each page took every waiting task's module out of TOAST.
            var sql = MartenTaskQueries.WaitingKeys(MartenTaskQueries.Waiting(session.Query<TaskState>(), after)).ToCommand().CommandText;
            sql.ShouldNotContain("d.data", Case.Insensitive, customMessage: sql);

            // Bitmap scans and sorts priced out too: a table of one row is cheaper to sort than to read in order. A
            // generic plan, as the manager's connections make (plan_cache_mode): one cannot use a partial index whose
            // predicate names a value the query passes as a parameter.
            var plan = await PlanAsync(MartenTaskQueries.Waiting(session.Query<TaskState>(), after).Take(100).ToCommand(), "bitmapscan", "sort", "generic");
            plan.ShouldContain(MartenTaskQueries.WaitingIndex, customMessage: plan);
            plan.ShouldNotContain("Sort", customMessage: plan);
        }
    }

    /// <summary>
    /// The task list's query (and so its total, which counts every row it lets through) tests the deleted flag, status
    /// and proplet on columns: reading the flag from the JSON took every task's document, module included, out of TOAST
    /// for every GET /tasks (1.8 s over 50,000 tasks with 6 KiB modules), and so did the name search (3.3 s over 90,000).
    /// </summary>
    [Fact]
    public void TheTaskList_ReadsNoDocumentToFilter()
    {
        using var session = _marten.QuerySession();
        var filter = new TaskListFilter(Metadata: """{"team":"edge"}""", Status: Domain.Tasks.TaskStatus.Running, Name: "web", PropletId: "p1");
        var sql = MartenTaskQueries.Filter(session.Query<TaskState>(), filter).ToCommand().CommandText;

        var where = sql[sql.IndexOf(" where ", StringComparison.OrdinalIgnoreCase)..];
        where.ShouldNotContain("d.data", Case.Insensitive, customMessage: sql);
    }

    /// <summary>
    /// The fleet's running-task counts are grouped by PostgreSQL on the duplicated columns and read no document: the
    /// count read each running task's JSON (its deleted flag), whole modules out of TOAST, on every fleet read.
    /// </summary>
    [Fact]
    public async Task TheFleetsCounts_ReadNoDocument_FromTheRunningTasksIndex()
    {
        await using var session = _marten.QuerySession();
        var command = MartenPropletRegistry.RunningCounts(session.Query<TaskState>()).ToCommand();
        var sql = command.CommandText;

        sql.ShouldContain("group by", Case.Insensitive, customMessage: sql);
        sql.ShouldNotContain("d.data", Case.Insensitive, customMessage: sql);
        var plan = await PlanAsync(command, "bitmapscan", "generic");
        plan.ShouldContain(MartenPropletRegistry.RunningIndex, customMessage: plan);
    }

    /// <summary>
    /// The plan of <paramref name="command"/>, with sequential scans priced out (a table this small is scanned otherwise),
    /// and <paramref name="off"/> (more planner methods priced out; "generic": a generic plan, as the manager's are).
    /// </summary>
    private async Task<string> PlanAsync(NpgsqlCommand command, params string[] off)
    {
        await using var connection = await _db.DataSource.OpenConnectionAsync(Ct);
        foreach (var method in off.Prepend("seqscan"))
        {
            await using var setting = new NpgsqlCommand(method == "generic" ? "set plan_cache_mode = force_generic_plan" : $"set enable_{method} = off", connection);
            await setting.ExecuteNonQueryAsync(Ct);
        }

        // A generic plan is made only for a prepared statement (an unnamed one is always planned for its values): the
        // query is PREPAREd by name, with Marten's :pN placeholders as $N+1, and explained as an EXECUTE of it.
        var generic = off.Contains("generic");
        if (generic)
        {
            var text = System.Text.RegularExpressions.Regex.Replace(command.CommandText, @":p(\d+)", m => "$" + (int.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture) + 1));
            await using var prepare = new NpgsqlCommand("prepare plan_under_test as " + text.TrimEnd(';'), connection);
            await prepare.ExecuteNonQueryAsync(Ct);
        }

        // EXPLAIN takes no parameters: the values go in as literals of unknown type, which EXECUTE casts to the statement's.
        var arguments = string.Join(", ", command.Parameters.Cast<NpgsqlParameter>().Select(p => "'" + (p.Value switch
        {
            DateTimeOffset at => at.ToUniversalTime().ToString("O", System.Globalization.CultureInfo.InvariantCulture),
            IFormattable value => value.ToString(null, System.Globalization.CultureInfo.InvariantCulture),
            var value => value?.ToString(),
        })?.Replace("'", "''", StringComparison.Ordinal) + "'"));
        var execute = command.Parameters.Count == 0 ? "explain execute plan_under_test" : $"explain execute plan_under_test({arguments})";
        await using var explain = new NpgsqlCommand(generic ? execute : "explain " + command.CommandText, connection);
        if (!generic)
        {
            foreach (NpgsqlParameter parameter in command.Parameters)
            {
                explain.Parameters.Add(parameter.Clone());
            }
        }

        var plan = new List<string>();
        await using (var reader = await explain.ExecuteReaderAsync(Ct))
        {
            while (await reader.ReadAsync(Ct))
            {
                plan.Add(reader.GetString(0));
            }
        }

        return string.Join('\n', plan);
    }

    private async Task AppendAsync(PropletId id, ExpectedVersion expected, params PropletEvent[] events) =>
        await _store.AppendAsync(PropletAggregate.StreamId(id), PropletAggregate.StreamType, expected, events, Meta(), Ct);

    private async Task<PropletDocument?> DocumentAsync(PropletId id)
    {
        await using var session = _marten.QuerySession();
        return await session.LoadAsync<PropletDocument>(MartenStreamIds.ToGuid(PropletAggregate.StreamId(id)), Ct);
    }

    /// <summary>The fleet counts tasks running on each proplet and names those running on a proplet no longer registered;
    /// a broadcast task runs on none in particular and is neither (the sweep re-broadcast it as a task on a deleted
    /// proplet "broadcast").</summary>
    [Fact]
    public async Task TheFleet_CountsRunningTasksByProplet_LeavingBroadcastsOut()
    {
        async Task RunAsync(TaskId id, string propletId, bool broadcast)
        {
            var spec = TaskSpec.Named("main") with { Broadcast = broadcast };
            (await _commands.HandleAsync(TaskAggregate.Decider, TaskAggregate.StreamId(id), new CreateTask(id, spec, T0), Meta(), Ct)).IsRejected.ShouldBeFalse();
            (await _commands.HandleAsync(TaskAggregate.Decider, TaskAggregate.StreamId(id), new StartTask(id, T0), Meta(1), Ct)).IsRejected.ShouldBeFalse();
            (await _commands.HandleAsync(TaskAggregate.Decider, TaskAggregate.StreamId(id), new DispatchTask(id, propletId, T0), Meta(2), Ct)).IsRejected.ShouldBeFalse();
        }

        var registered = new PropletId(Guid.NewGuid().ToString());
        await AppendAsync(registered, ExpectedVersion.NoStream, new PropletRegistered(registered, "Abbott-Crane", PropletMetadata.Empty, T0));
        await RunAsync(NewId(), registered.Value, broadcast: false);
        await RunAsync(NewId(), "gone", broadcast: false);
        await RunAsync(NewId(), TaskSpec.BroadcastTarget, broadcast: true);

        var fleet = await new MartenPropletRegistry(_marten, TimeProvider.System).ListFleetAsync(Ct);

        fleet.Proplets.ShouldHaveSingleItem().RunningTasks.ShouldBe(1);
        fleet.GoneWithRunningTasks.ShouldBe([new PropletId("gone")]);
    }

    [Fact]
    public async Task Heartbeats_PatchTheProplet_WithoutAnEvent_KeepingTheLastTen()
    {
        var id = new PropletId("edge-node-1");
        var registry = new MartenPropletRegistry(_marten, new FixedClock(T0.AddMinutes(10)));
        (await registry.RecordHeartbeatAsync(id, T0, Ct)).ShouldBeNull();
        await AppendAsync(id, ExpectedVersion.NoStream, new PropletRegistered(id, "Abbott-Crane", PropletMetadata.Empty, T0));

        for (var n = 1; n <= 12; n++)
        {
            (await registry.RecordHeartbeatAsync(id, T0.AddSeconds(n), Ct)).ShouldBe(false);
        }

        // A late heartbeat neither joins the history nor moves the newest one back.
        (await registry.RecordHeartbeatAsync(id, T0.AddSeconds(1), Ct)).ShouldBe(false);
        var view = (await registry.GetAsync(id, Ct))!;
        view.LastAliveAt.ShouldBe(T0.AddSeconds(12));
        view.AliveHistory.Count.ShouldBe(MartenPropletRegistry.AliveHistoryLength);
        view.AliveHistory[^1].ShouldBe(T0.AddSeconds(12));
        view.AliveHistory[0].ShouldBe(T0.AddSeconds(3));
        (await _store.ReadStreamAsync(PropletAggregate.StreamId(id), StreamReadOptions.All, Ct))!.Version.ShouldBe(1);

        await AppendAsync(id, ExpectedVersion.Exact(1), new PropletWentOffline(id, "no heartbeat", T0.AddMinutes(5)));
        (await registry.RecordHeartbeatAsync(id, T0.AddMinutes(6), Ct)).ShouldBe(true);
        (await registry.GetAsync(id, Ct))!.LastAliveAt.ShouldBe(T0.AddMinutes(6));

        await AppendAsync(id, ExpectedVersion.Exact(2), new PropletDeleted(id, T0.AddMinutes(7)));
        (await registry.GetAsync(id, Ct)).ShouldBeNull();
        (await registry.ListAsync(Ct)).ShouldBeEmpty();
        (await registry.RecordHeartbeatAsync(id, T0.AddMinutes(8), Ct)).ShouldBeNull();
    }

    /// <summary>
    /// A node whose clock runs ten minutes ahead records a heartbeat: the next node to record one, its clock right, does
    /// not keep that time (later than its now) as the newest. Kept, the proplet counted as alive for those ten minutes
    /// whatever it did (now - last negative), and one that died meanwhile was found out ten minutes late.
    /// </summary>
    [Fact]
    public async Task GivenAHeartbeatFromAClockAhead_WhenANodeWithTheRightTimeRecordsOne_ThenItsTimeIsTheNewest()
    {
        var id = new PropletId("edge-node-ahead");
        await AppendAsync(id, ExpectedVersion.NoStream, new PropletRegistered(id, "Abbott-Crane", PropletMetadata.Empty, T0));
        await new MartenPropletRegistry(_marten, new FixedClock(T0.AddMinutes(10))).RecordHeartbeatAsync(id, T0.AddMinutes(10), Ct);

        var registry = new MartenPropletRegistry(_marten, new FixedClock(T0.AddSeconds(1)));
        (await registry.RecordHeartbeatAsync(id, T0.AddSeconds(1), Ct)).ShouldBe(false);

        var view = (await registry.GetAsync(id, Ct))!;
        view.LastAliveAt.ShouldBe(T0.AddSeconds(1));
        view.IsAlive(T0.AddMinutes(1), TimeSpan.FromSeconds(30)).ShouldBeFalse();
    }

    /// <summary>
    /// The alive history after a heartbeat from a node whose clock runs ten minutes ahead: the right-clocked nodes drop
    /// that future time and keep appending. Kept, no heartbeat joined the history for those ten minutes (none was later
    /// than it by the margin) and the API showed the future time as the newest.
    /// </summary>
    [Fact]
    public async Task GivenAHeartbeatFromAClockAhead_WhenNodesWithTheRightTimeRecordMore_ThenTheHistoryKeepsTheirs()
    {
        var id = new PropletId("edge-node-ahead-history");
        await AppendAsync(id, ExpectedVersion.NoStream, new PropletRegistered(id, "Abbott-Crane", PropletMetadata.Empty, T0));
        await new MartenPropletRegistry(_marten, new FixedClock(T0.AddMinutes(10))).RecordHeartbeatAsync(id, T0.AddMinutes(10), Ct);

        await new MartenPropletRegistry(_marten, new FixedClock(T0.AddSeconds(1))).RecordHeartbeatAsync(id, T0.AddSeconds(1), Ct);
        var registry = new MartenPropletRegistry(_marten, new FixedClock(T0.AddSeconds(2)));
        await registry.RecordHeartbeatAsync(id, T0.AddSeconds(2), Ct);

        var view = (await registry.GetAsync(id, Ct))!;
        view.AliveHistory.ShouldBe([T0.AddSeconds(1), T0.AddSeconds(2)]);
        view.LastAliveAt.ShouldBe(T0.AddSeconds(2));
    }

    [Fact]
    public async Task PropletState_IsTheDecidersFold_UnderTheStreamsGuid_AndARebuildGivesItBack()
    {
        var id = new PropletId("not-a-uuid proplet");
        var metadata = PropletMetadata.Empty with { Os = "linux", TotalMemoryBytes = 1UL << 40 };
        PropletEvent[] events =
        [
            new PropletRegistered(id, "Crane-Darrow", PropletMetadata.Empty, T0),
            new PropletMetadataChanged(id, metadata, T0.AddSeconds(1)),
            new PropletWentOffline(id, "no heartbeat", T0.AddSeconds(2)),
            new PropletCameOnline(id, T0.AddSeconds(3)),
        ];
        await AppendAsync(id, ExpectedVersion.NoStream, events[..2]);
        await AppendAsync(id, ExpectedVersion.Exact(2), events[2..]);
        var fold = events.Aggregate(PropletDecider.Initial, PropletDecider.Evolve);

        var document = (await DocumentAsync(id))!;
        document.Id.ShouldBe(MartenStreamIds.ToGuid(PropletAggregate.StreamId(id)));
        document.State.ShouldBe(fold);
        document.State.Metadata.TotalMemoryBytes.ShouldBe(1UL << 40);

        // Liveness is not in the events, nor in the document (PropletLiveness): a rebuild gives the state back and keeps it.
        var registry = new MartenPropletRegistry(_marten, TimeProvider.System);
        await registry.RecordHeartbeatAsync(id, T0.AddSeconds(4), Ct);
        var rebuilder = new MartenProjectionRebuilder(_marten, NullLogger<MartenProjectionRebuilder>.Instance);
        await _db.ExecuteAsync("update {schema}.mt_doc_propletdocument set data = '{}'::jsonb");
        await rebuilder.RebuildAsync(PropletDocumentProjection.ProjectionName, TimeSpan.FromMinutes(1), Ct);
        (await DocumentAsync(id))!.State.ShouldBe(fold);
        (await registry.GetAsync(id, Ct))!.LastAliveAt.ShouldBe(T0.AddSeconds(4));

        // A new registration starts liveness afresh.
        await registry.RecordHeartbeatAsync(id, T0.AddSeconds(5), Ct);
        await AppendAsync(id, ExpectedVersion.Exact(4), new PropletRegistered(id, "Crane-Darrow", metadata, T0.AddSeconds(6)));
        var registered = (await registry.GetAsync(id, Ct))!;
        registered.LastAliveAt.ShouldBeNull();
        registered.AliveHistory.ShouldBeEmpty();
        await registry.RecordHeartbeatAsync(id, T0.AddSeconds(7), Ct);
        (await registry.GetAsync(id, Ct))!.AliveHistory.ShouldBe([T0.AddSeconds(7)]);
    }

    /// <summary>A node's clock, fixed at <paramref name="now"/>.</summary>
    private sealed class FixedClock(DateTimeOffset now) : TimeProvider
    {
        public override DateTimeOffset GetUtcNow() => now;
    }
}
