using Propeller.Application.Scheduling;
using Propeller.Application.Tasks;
using Propeller.Domain.Common;
using Propeller.Domain.Tasks;
using Propeller.Infrastructure.MartenStore;
using Propeller.Infrastructure.Tests.Support;
using static Propeller.Domain.Tasks.TaskCommand;
using static Propeller.Infrastructure.Tests.Support.TestEvents;
using TaskStatus = Propeller.Domain.Tasks.TaskStatus;

namespace Propeller.Infrastructure.Tests.MartenStore;

/// <summary>The task view on Marten: the inline TaskState document read by <see cref="MartenTaskQueries"/>.</summary>
public sealed class MartenTaskQueriesTests : IAsyncLifetime
{
    private TestDatabase _db = null!;
    private MartenTaskQueries _queries = null!;

    public async ValueTask InitializeAsync()
    {
        _db = await TestDatabase.CreateAsync("task_view");
        _queries = new MartenTaskQueries(_db.Marten);
    }

    public ValueTask DisposeAsync() => _db.DisposeAsync();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private async Task<TaskState> HandleAsync(TaskCommand command)
    {
        var result = await _db.Commands.HandleAsync(TaskAggregate.Decider, TaskAggregate.StreamId(command.TaskId), command, Meta(), Ct);
        result.Rejection.ShouldBeNull();
        return result.State;
    }

    [Fact]
    public async Task TwoNodes_EachWithItsOwnMarten_KeepTheViewRight()
    {
        // Another node: its own Marten store, event store port and command path, on the same schema.
        using var marten = TestDatabase.NewMarten(_db.DataSource, _db.Schema);
        var store = new MartenEventStore(marten, _db.DataSource, _db.Options, _db.Registry);
        var other = new StreamCommands(store, new Propeller.Application.Aggregates.AggregateLoader(store));
        var id = NewId();
        await HandleAsync(new CreateTask(id, TaskSpec.Named("add"), T0));
        await HandleAsync(new StartTask(id, T0.AddSeconds(1)));

        (await other.HandleAsync(TaskAggregate.Decider, TaskAggregate.StreamId(id), new DispatchTask(id, "p-other", T0.AddSeconds(2)), Meta(), Ct)).Rejection.ShouldBeNull();
        var done = await HandleAsync(new RecordResult(id, "42", null, T0.AddSeconds(3)));

        var view = await _queries.GetAsync(id, Ct);
        view.ShouldBe(done);
        view!.PropletId.ShouldBe("p-other");
        view.Results.ShouldBe("42");
    }

    [Fact]
    public async Task View_FollowsTheStream_AndRoundTripsTheWholeState()
    {
        var id = NewId();
        var spec = TaskSpec.Named("add") with
        {
            File = "AGFzbQ==",
            CliArgs = new EquatableArray<string>(["--invoke", "main"]),
            Inputs = new EquatableArray<string>(["10", "1.50"]),
            Env = new EquatableMap([new("K", "V")]),
            DependsOn = new EquatableArray<string>(["a"]),
            WorkflowId = "wf",
            Metadata = """{"team":"edge","n":1}""",
            MonitoringProfile = """{"enabled":true,"interval":5}""",
            HalStoragePath = "",
        };
        var created = await HandleAsync(new CreateTask(id, spec, T0));
        (await _queries.GetAsync(id, Ct)).ShouldBe(created);

        // Running (a task with dependencies is not started while no workflow coordinator exists: without them).
        id = NewId();
        await HandleAsync(new CreateTask(id, spec with { DependsOn = EquatableArray<string>.Empty }, T0));
        await HandleAsync(new StartTask(id, T0.AddSeconds(1)));
        var running = await HandleAsync(new DispatchTask(id, "p1", T0.AddSeconds(2)));

        var view = await _queries.GetAsync(id, Ct);

        view.ShouldBe(running);
        view!.Status.ShouldBe(TaskStatus.Running);
        view.Spec!.HalStoragePath.ShouldBe("");
    }

    [Fact]
    public async Task List_PagesOldestFirst_AndFiltersByMetadata()
    {
        var ids = new List<TaskId>();
        for (var i = 0; i < 5; i++)
        {
            var id = NewId();
            ids.Add(id);
            await HandleAsync(new CreateTask(id, TaskSpec.Named($"t{i}") with { Metadata = i % 2 == 0 ? """{"team":"edge"}""" : """{"team":"core"}""" }, T0.AddSeconds(i)));
        }

        var page = await _queries.ListAsync(1, 2, TaskListFilter.None, Ct);
        page.Total.ShouldBe(5);
        page.Tasks.Select(t => t.Spec!.Name).ShouldBe(["t1", "t2"]);

        var edge = await _queries.ListAsync(0, 100, new TaskListFilter("""{"team":"edge"}"""), Ct);
        edge.Total.ShouldBe(3);
        edge.Tasks.Select(t => t.Spec!.Name).ShouldBe(["t0", "t2", "t4"]);
    }

    [Fact]
    public async Task List_FiltersByStateNameAndProplet_AndPagesNewestFirst()
    {
        var ids = new List<TaskId>();
        foreach (var name in new[] { "add_one", "Add_two", "multiply", "100%_add" })
        {
            var id = NewId();
            ids.Add(id);
            await HandleAsync(new CreateTask(id, TaskSpec.Named(name), T0.AddSeconds(ids.Count)));
        }

        await HandleAsync(new StartTask(ids[1], T0.AddSeconds(10), null));

        (await _queries.ListAsync(0, 10, new TaskListFilter(Name: "ADD"), Ct)).Tasks.Select(t => t.Spec!.Name).ShouldBe(["add_one", "Add_two", "100%_add"]);
        (await _queries.ListAsync(0, 10, new TaskListFilter(Name: "%_"), Ct)).Tasks.Select(t => t.Spec!.Name).ShouldBe(["100%_add"]);
        (await _queries.ListAsync(0, 10, new TaskListFilter(Status: TaskStatus.Scheduled), Ct)).Tasks.Select(t => t.Spec!.Name).ShouldBe(["Add_two"]);
        var pending = await _queries.ListAsync(0, 2, new TaskListFilter(Status: TaskStatus.Pending, Name: "a", NewestFirst: true), Ct);
        pending.Total.ShouldBe(2);
        pending.Tasks.Select(t => t.Spec!.Name).ShouldBe(["100%_add", "add_one"]);
        (await _queries.ListAsync(0, 10, new TaskListFilter(PropletId: "nowhere"), Ct)).Total.ShouldBe(0);
    }

    /// <summary>
    /// The sweep's keyset pages: every waiting task exactly once, highest priority first, then least recently changed,
    /// then by id (two tasks changed at the same instant), whatever the page size; tasks not waiting are left out.
    /// The times carry ticks below a microsecond that PostgreSQL rounds up: a key compared as a truncated timestamp
    /// parameter would bring its task back on the next page (a page of one would never move on).
    /// </summary>
    [Fact]
    public async Task ListWaiting_PagesAfterTheLastKey_EveryWaitingTaskOnce_InPriorityOrder()
    {
        var odd = T0.AddTicks(9);
        async Task<TaskId> WaitingAsync(string name, int priority, DateTimeOffset startedAt)
        {
            var id = NewId();
            await HandleAsync(new CreateTask(id, TaskSpec.Named(name) with { Priority = priority }, T0));
            await HandleAsync(new StartTask(id, startedAt));
            return id;
        }

        var low = await WaitingAsync("low", 10, odd);
        var sameTimeA = await WaitingAsync("same-a", 50, odd.AddSeconds(1));
        var sameTimeB = await WaitingAsync("same-b", 50, odd.AddSeconds(1));
        var older = await WaitingAsync("older", 50, odd.AddTicks(-4));
        var high = await WaitingAsync("high", 90, odd.AddSeconds(2));
        var running = await WaitingAsync("running", 99, odd);
        await HandleAsync(new DispatchTask(running, "p1", odd.AddSeconds(3)));
        await HandleAsync(new CreateTask(NewId(), TaskSpec.Named("pending") with { Priority = 99 }, T0));

        TaskId[] expected = [high, older, .. new[] { sameTimeA, sameTimeB }.OrderBy(id => id.Value.ToString(), StringComparer.Ordinal), low];
        foreach (var size in new[] { 1, 2, 5, 10 })
        {
            var seen = new List<TaskId>();
            WaitingTaskKey? after = null;
            while (true)
            {
                var page = await ((IWaitingTaskQueries)_queries).ListWaitingAsync(after, size, Ct);
                seen.AddRange(page.Select(t => t.Id));
                if (page.Count < size || seen.Count > expected.Length)
                {
                    break;
                }

                after = page[^1];
            }

            string.Join(" ", seen).ShouldBe(string.Join(" ", expected), $"pages of {size}");
        }
    }

    [Fact]
    public async Task DeletedTask_LeavesTheView()
    {
        var id = NewId();
        await HandleAsync(new CreateTask(id, TaskSpec.Named("gone"), T0));
        await HandleAsync(new DeleteTask(id, T0.AddSeconds(1)));

        (await _queries.GetAsync(id, Ct)).ShouldBeNull();
        (await _queries.ListAsync(0, 10, TaskListFilter.None, Ct)).Total.ShouldBe(0);
    }
}
