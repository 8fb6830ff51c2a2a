using System.Text.Json.Nodes;
using Marten;
using Microsoft.Extensions.Logging.Abstractions;
using Propeller.Application.Aggregates;
using Propeller.Application.EventStore;
using Propeller.Application.Tasks;
using Propeller.Domain.Tasks;
using Propeller.Infrastructure.MartenStore;
using Propeller.Infrastructure.Tests.Support;
using static Propeller.Domain.Tasks.TaskCommand;
using static Propeller.Infrastructure.Tests.Support.TestEvents;
using TaskStatus = Propeller.Domain.Tasks.TaskStatus;

namespace Propeller.Infrastructure.Tests.MartenStore;

/// <summary>The event store port on Marten 9 (issue 14, ADR 0010): races, replay, rebuild, metadata, history shape.</summary>
public sealed class MartenEventStoreTests : IAsyncLifetime
{
    private TestDatabase _db = null!;
    private DocumentStore _marten = null!;
    private MartenEventStore _store = null!;
    private StreamCommands _commands = null!;
    private AggregateLoader _loader = null!;

    public async ValueTask InitializeAsync()
    {
        _db = await TestDatabase.CreateAsync("marten_store");
        (_marten, _store) = (_db.Marten, _db.Store);
        _loader = new AggregateLoader(_store);
        _commands = new StreamCommands(_store, _loader);
    }

    public async ValueTask DisposeAsync()
    {
        await _db.DisposeAsync();
    }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private Task<CommandResult<TaskEvent, TaskState>> HandleAsync(TaskCommand command, int seconds) =>
        _commands.HandleAsync(TaskAggregate.Decider, TaskAggregate.StreamId(command.TaskId), command, Meta(seconds), Ct);

    [Fact]
    public async Task TwoWritersAtOneVersion_OneWins_AndTheOtherGetsAConcurrencyException()
    {
        var id = NewId();
        var stream = TaskAggregate.StreamId(id);
        await _store.AppendAsync(stream, TaskAggregate.StreamType, ExpectedVersion.NoStream, [Created(id)], Meta(), Ct);

        var outcomes = await Task.WhenAll(Enumerable.Range(1, 2).Select(async n =>
        {
            try
            {
                await _store.AppendAsync(stream, TaskAggregate.StreamType, ExpectedVersion.Exact(1), [Numbered(id, n)], Meta(n), Ct);
                return "won";
            }
            catch (ConcurrencyException)
            {
                return "lost";
            }
        }));

        outcomes.Order().ShouldBe(["lost", "won"]);
        (await _store.ReadStreamAsync(stream, StreamReadOptions.All, Ct))!.Version.ShouldBe(2);
        await Should.ThrowAsync<ConcurrencyException>(() => _store.AppendAsync(stream, TaskAggregate.StreamType, ExpectedVersion.NoStream, [Created(id)], Meta(), Ct));
    }

    [Fact]
    public async Task AStreamFetchedForWriting_RefusesItsCommit_WhenAnotherWriterAppendedSince()
    {
        // The decision was made on version 1; another writer's append in between must fail the commit in every append
        // mode (Rich reads the stream's version again at the commit, and must not take that one as the expected one).
        var id = NewId();
        var stream = TaskAggregate.StreamId(id);
        await _store.AppendAsync(stream, TaskAggregate.StreamType, ExpectedVersion.NoStream, [Created(id)], Meta(), Ct);
        await using var session = _marten.LightweightSession();
        var fetched = await session.Events.FetchForWriting<TaskState>(id.Value, Ct);
        fetched.CurrentVersion.ShouldBe(1);

        await _store.AppendAsync(stream, TaskAggregate.StreamType, ExpectedVersion.Exact(1), [Numbered(id, 1)], Meta(1), Ct);
        fetched.AppendOne(Numbered(id, 2));
        await Should.ThrowAsync<JasperFx.ConcurrencyException>(() => session.SaveChangesAsync(Ct));
        (await _store.ReadStreamAsync(stream, StreamReadOptions.All, Ct))!.Version.ShouldBe(2);
    }

    [Fact]
    public async Task ConcurrentCommandsOnOneTask_AreRetried_AndNoneIsLost()
    {
        var id = NewId();
        await HandleAsync(new CreateTask(id, TaskSpec.Named("v0"), T0), 0);

        // Separate writers, as on separate nodes: the losers reload and decide again.
        var handlers = Enumerable.Range(0, 6).Select(_ => new StreamCommands(_store, _loader)).ToArray();
        var results = await Task.WhenAll(handlers.Select((h, n) =>
            h.HandleAsync(TaskAggregate.Decider, TaskAggregate.StreamId(id), new UpdateTask(id, new TaskSpecPatch { Name = $"v{n + 1}" }, T0.AddSeconds(n + 1)), Meta(n + 1), Ct)));

        results.ShouldAllBe(r => !r.IsRejected);
        var history = (await _store.ReadStreamAsync(TaskAggregate.StreamId(id), StreamReadOptions.All, Ct))!;
        history.Version.ShouldBe(7);
        history.Events.Select(e => e.Version).ShouldBe([1, 2, 3, 4, 5, 6, 7]);
        history.Events.Skip(1).Select(e => ((TaskEvent.TaskUpdated)e.Data).Spec.Name).Order().ShouldBe(Enumerable.Range(1, 6).Select(n => $"v{n}").Order());
    }

    [Fact]
    public async Task TheStateAtVersionN_IsTheFoldOfTheFirstNEvents_InMartenAndThroughThePort()
    {
        var id = NewId();
        var stream = TaskAggregate.StreamId(id);
        await HandleAsync(new CreateTask(id, TaskSpec.Named("add"), T0), 0);
        await HandleAsync(new StartTask(id, T0.AddSeconds(10)), 10);
        await HandleAsync(new DispatchTask(id, "p1", T0.AddSeconds(20)), 20);
        await HandleAsync(new RecordResult(id, "42", null, T0.AddSeconds(30)), 30);

        var events = (await _store.ReadStreamAsync(stream, StreamReadOptions.All, Ct))!.Events;
        events.Count.ShouldBe(4);
        await using var session = _marten.QuerySession();
        for (var n = 1; n <= events.Count; n++)
        {
            var fold = events.Take(n).Aggregate(TaskState.Initial, (state, e) => TaskDecider.Evolve(state, (TaskEvent)e.Data));
            (await _loader.LoadAsync(TaskAggregate.Decider, stream, new StreamReadOptions(ToVersion: n), Ct)).State.ShouldBe(fold);
            (await session.Events.AggregateStreamAsync<TaskState>(id.Value, version: n, token: Ct)).ShouldBe(fold);

            // ?at=: the state as of the n-th event's timestamp (the decision time, kept by QuickWithServerTimestamps).
            events[n - 1].Metadata.Timestamp.ShouldBe(T0.AddSeconds((n - 1) * 10));
            (await session.Events.AggregateStreamAsync<TaskState>(id.Value, timestamp: T0.AddSeconds(((n - 1) * 10) + 5), token: Ct)).ShouldBe(fold);
            (await _loader.LoadAsync(TaskAggregate.Decider, stream, new StreamReadOptions(Until: T0.AddSeconds(((n - 1) * 10) + 5)), Ct)).State.ShouldBe(fold);
        }

        await using var writer = _marten.LightweightSession();
        (await writer.Events.FetchLatest<TaskState>(id.Value, Ct))!.Status.ShouldBe(TaskStatus.Completed);
    }

    /// <summary>
    /// Commit order need not follow the commands' times (a batch queue, a retried race, another node's clock): ?at= is
    /// the stream up to its first event later than the time, never a set of events with a hole folded as if whole.
    /// </summary>
    [Fact]
    public async Task TheStateAtATime_IsAPrefixOfTheStream_WhenTimesAreOutOfCommitOrder()
    {
        var id = NewId();
        var stream = TaskAggregate.StreamId(id);
        await HandleAsync(new CreateTask(id, TaskSpec.Named("add"), T0), 0);
        await HandleAsync(new UpdateTask(id, new TaskSpecPatch { Name = "late" }, T0.AddSeconds(20)), 20);
        await HandleAsync(new UpdateTask(id, new TaskSpecPatch { Name = "early" }, T0.AddSeconds(10)), 10);

        var atFifteen = await _store.ReadStreamAsync(stream, new StreamReadOptions(Until: T0.AddSeconds(15)), Ct);
        atFifteen!.Events.Select(e => e.Version).ShouldBe([1]);
        (await _loader.LoadAsync(TaskAggregate.Decider, stream, new StreamReadOptions(Until: T0.AddSeconds(15)), Ct)).State.Spec!.Name.ShouldBe("add");
        (await _loader.LoadAsync(TaskAggregate.Decider, stream, new StreamReadOptions(Until: T0.AddSeconds(25)), Ct)).State.Spec!.Name.ShouldBe("early");
    }

    [Fact]
    public async Task TheRebuiltStateDocument_EqualsTheInlineOne()
    {
        var ids = Enumerable.Range(0, 5).Select(_ => NewId()).ToArray();
        foreach (var id in ids)
        {
            await HandleAsync(new CreateTask(id, TaskSpec.Named("add"), T0), 0);
            await HandleAsync(new StartTask(id, T0.AddSeconds(1)), 1);
        }

        await HandleAsync(new DispatchTask(ids[0], "p1", T0.AddSeconds(2)), 2);
        async Task<TaskState[]> LoadAllAsync()
        {
            await using var session = _marten.QuerySession();
            return [.. await Task.WhenAll(ids.Select(async id => (await session.LoadAsync<TaskState>(id, Ct))!))];
        }

        var inline = await LoadAllAsync();
        inline[0].Status.ShouldBe(TaskStatus.Running);
        inline[1].Status.ShouldBe(TaskStatus.Scheduled);

        await _db.ExecuteAsync("update {schema}.mt_doc_taskstate set data = '{}'::jsonb");
        var log = new ListLogger<MartenProjectionRebuilder>();
        var rebuilder = new MartenProjectionRebuilder(_marten, log) { ProgressInterval = TimeSpan.FromMilliseconds(10) };
        (await rebuilder.RebuildAsync("task_state", TimeSpan.FromMinutes(1), Ct)).ShouldBe(11);
        (await LoadAllAsync()).ShouldBe(inline);
        log.Lines.First().ShouldBe("Information: Rebuilding projection task_state from 11 events (up to sequence 11)");
        log.Lines.Last().ShouldStartWith("Information: Rebuilt projection task_state: 11 events in ");

        await Should.ThrowAsync<ArgumentException>(() => rebuilder.RebuildAsync("no_such_view", TimeSpan.FromMinutes(1), Ct));
    }

    [Fact]
    public async Task Metadata_RoundTrips_ThroughMartensColumns()
    {
        var id = NewId();
        var stream = TaskAggregate.StreamId(id);
        var plugins = """[{"plugin":"audit","hook":"authorize","allowed":true}]""";
        var metadata = new EventMetadata("corr-1", "cause-1", "alice", T0.AddSeconds(5), new Dictionary<string, string> { ["plugins"] = plugins, ["note"] = "x" });
        await _store.AppendAsync(stream, TaskAggregate.StreamType, ExpectedVersion.NoStream, [Created(id), Numbered(id, 1)], metadata, Ct);

        var read = (await _store.ReadStreamAsync(stream, StreamReadOptions.All, Ct))!.Events;
        read.Count.ShouldBe(2);
        foreach (var e in read)
        {
            e.Metadata.CorrelationId.ShouldBe("corr-1");
            e.Metadata.CausationId.ShouldBe("cause-1");
            e.Metadata.UserId.ShouldBe("alice");
            e.Metadata.Timestamp.ShouldBe(T0.AddSeconds(5));
            e.Metadata.Headers!["plugins"].ShouldBe(plugins);
            e.Metadata.Headers["note"].ShouldBe("x");
        }

        read[0].EventId.ShouldNotBe(read[1].EventId);
        (await _db.ScalarAsync<string>("select correlation_id || '|' || causation_id || '|' || user_name from {schema}.mt_events where stream_id = $1 and version = 1", id.Value))
            .ShouldBe("corr-1|cause-1|alice");
    }

    [Fact]
    public async Task History_KeepsTheAliases_AndTheStoredJsonShapeOfTheOldStore()
    {
        var id = NewId();
        var stream = TaskAggregate.StreamId(id);
        TaskEvent[] events =
        [
            Created(id),
            Numbered(id, 1),
            new TaskEvent.TaskDispatched(id, 1, "p1", T0.AddSeconds(2), new Propeller.Domain.Common.EquatableMap(new Dictionary<string, string> { ["A"] = "1" })),
            new TaskEvent.TaskCompleted(id, 1, "42", T0.AddSeconds(3)),
        ];
        await _store.AppendAsync(stream, TaskAggregate.StreamType, ExpectedVersion.NoStream, events, Meta(), Ct);

        var history = (await _store.ReadStreamAsync(stream, StreamReadOptions.All, Ct))!;
        history.StreamType.ShouldBe(TaskAggregate.StreamType);
        history.Events.Select(e => e.Type).ShouldBe(["task.created.v1", "task.start_requested.v1", "task.dispatched.v1", "task.completed.v1"]);
        history.Events.Select(e => e.Data).ShouldBe(events);
        for (var n = 0; n < events.Length; n++)
        {
            var stored = await _db.ScalarAsync<string>("select type || ' ' || data::text from {schema}.mt_events where stream_id = $1 and version = $2", id.Value, (long)n + 1);
            var (alias, json) = _db.Serializer.Serialize(events[n]);
            stored[..stored.IndexOf(' ', StringComparison.Ordinal)].ShouldBe(alias);
            JsonNode.DeepEquals(JsonNode.Parse(stored[(alias.Length + 1)..]), JsonNode.Parse(json)).ShouldBeTrue(stored);
        }
    }

    [Fact]
    public async Task AnArchivedStream_IsHidden_AndRefusesAppends()
    {
        var id = NewId();
        var stream = TaskAggregate.StreamId(id);
        await _store.AppendAsync(stream, TaskAggregate.StreamType, ExpectedVersion.NoStream, [Created(id)], Meta(), Ct);
        (await _store.ArchiveStreamAsync(stream, Ct)).ShouldBeTrue();

        (await _store.ReadStreamAsync(stream, StreamReadOptions.All, Ct)).ShouldBeNull();
        (await _store.ReadStreamAsync(stream, new StreamReadOptions(IncludeArchived: true), Ct))!.Archived.ShouldBeTrue();
        await Should.ThrowAsync<StreamArchivedException>(() => _store.AppendAsync(stream, TaskAggregate.StreamType, ExpectedVersion.Exact(1), [Numbered(id, 1)], Meta(), Ct));
        (await _store.ArchiveStreamAsync(TaskAggregate.StreamId(NewId()), Ct)).ShouldBeFalse();
    }

    [Fact]
    public void StreamIds_MapToGuids_Stably()
    {
        var id = Guid.CreateVersion7();
        MartenStreamIds.ToGuid($"task-{id}").ShouldBe(id);
        MartenStreamIds.ToGuid("proplet-edge-01").ShouldBe(MartenStreamIds.ToGuid("proplet-edge-01"));
        MartenStreamIds.ToGuid("proplet-edge-01").ShouldNotBe(MartenStreamIds.ToGuid("proplet-edge-02"));
        MartenStreamIds.TypeOf($"task-{id}").ShouldBe("task");
    }

    [Fact]
    public async Task ASchemaThatCannotBeApplied_StopsStartup_NamingTheSchemaAndTheCause()
    {
        // Something in the way of Marten's tables: a view where mt_streams must be created.
        const string schema = "marten_schema_blocked";
        await _db.ExecuteAsync($"drop schema if exists {schema} cascade");
        await _db.ExecuteAsync($"create schema {schema}");
        await _db.ExecuteAsync($"create view {schema}.mt_streams as select 1 as id");
        using var blocked = TestDatabase.NewMarten(_db.DataSource, schema);
        var settings = Microsoft.Extensions.Options.Options.Create(new Propeller.Infrastructure.MartenStore.EventStoreOptions { Schema = schema });

        var ex = await Should.ThrowAsync<Propeller.Infrastructure.MartenStore.EventStoreUnavailableException>(
            () => new MartenSchemaHostedService(blocked, _db.DataSource, settings, NullLogger<MartenSchemaHostedService>.Instance).StartAsync(Ct));
        ex.Message.ShouldStartWith($"Marten's event store schema could not be applied to schema '{schema}'");
        ex.Message.ShouldContain("mt_streams");
    }
}
