using Propeller.Application.EventStore;
using Propeller.Application.Tasks;
using Propeller.Domain.Common;
using Propeller.Domain.Tasks;
using Propeller.Infrastructure.Tests.Support;
using static Propeller.Domain.Tasks.TaskCommand;
using static Propeller.Infrastructure.Tests.Support.TestEvents;
using TaskStatus = Propeller.Domain.Tasks.TaskStatus;

namespace Propeller.Infrastructure.Tests.EventStore;

public sealed class AggregateLoaderTests : IAsyncLifetime
{
    private TestDatabase _db = null!;

    public async ValueTask InitializeAsync() => _db = await TestDatabase.CreateAsync("es_aggregates");

    public ValueTask DisposeAsync() => _db.DisposeAsync();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private Task<Propeller.Application.Aggregates.CommandResult<TaskEvent, TaskState>> HandleAsync(TaskCommand command) =>
        _db.Commands.HandleAsync(TaskAggregate.Decider, TaskAggregate.StreamId(command.TaskId), command, Meta(), Ct);

    [Fact]
    public async Task CommandPath_CreatesStartsCompletes_AndReplaysToAnyVersionOrTime()
    {
        var id = NewId();
        (await HandleAsync(new CreateTask(id, TaskSpec.Named("add"), T0))).Version.ShouldBe(1);
        (await HandleAsync(new StartTask(id, T0.AddSeconds(1)))).State.Status.ShouldBe(TaskStatus.Scheduled);
        (await HandleAsync(new DispatchTask(id, "p1", T0.AddSeconds(2)))).State.Status.ShouldBe(TaskStatus.Running);
        var done = await HandleAsync(new RecordResult(id, "42", null, T0.AddSeconds(3)));
        done.State.Status.ShouldBe(TaskStatus.Completed);
        done.Version.ShouldBe(4);

        var latest = await _db.Loader.LoadAsync(TaskAggregate.Decider, TaskAggregate.StreamId(id), Ct);
        latest.State.ShouldBe(done.State);
        latest.Version.ShouldBe(4);

        var atVersion2 = await _db.Loader.LoadAsync(TaskAggregate.Decider, TaskAggregate.StreamId(id), new StreamReadOptions(ToVersion: 2), Ct);
        atVersion2.State.Status.ShouldBe(TaskStatus.Scheduled);
        atVersion2.Version.ShouldBe(2);
    }

    [Fact]
    public async Task AFollowUpCommand_IsAppendedWithTheFirst_AndARejectedOneIsDropped()
    {
        var id = NewId();
        var stream = TaskAggregate.StreamId(id);
        await HandleAsync(new CreateTask(id, TaskSpec.Named("add"), T0));

        var both = await _db.Commands.HandleAsync(
            TaskAggregate.Decider, stream, new StartTask(id, T0.AddSeconds(1)), Meta(), static (_, _) => [],
            (state, _) => ValueTask.FromResult<TaskCommand?>(state.Status == TaskStatus.Scheduled ? new DispatchTask(id, "p1", T0.AddSeconds(1)) : null), Ct);
        both.Appended.Select(e => e.GetType().Name).ShouldBe(["TaskStartRequested", "TaskDispatched"]);
        both.State.Status.ShouldBe(TaskStatus.Running);
        both.Version.ShouldBe(3);
        (await _db.ScalarAsync<long>("select count(distinct xmin::text) from {schema}.mt_events where stream_id = $1 and version in (2, 3)", id.Value)).ShouldBe(1);

        // A follow-up the decider rejects (a second create) is dropped; the first command stands.
        var other = NewId();
        var alone = await _db.Commands.HandleAsync(
            TaskAggregate.Decider, TaskAggregate.StreamId(other), new CreateTask(other, TaskSpec.Named("b"), T0), Meta(), static (_, _) => [],
            (_, _) => ValueTask.FromResult<TaskCommand?>(new CreateTask(other, TaskSpec.Named("b"), T0)), Ct);
        alone.Rejection.ShouldBeNull();
        alone.Appended.Count.ShouldBe(1);
        alone.Version.ShouldBe(1);
    }

    [Fact]
    public async Task TwoNodes_EachWithItsCache_NeverDecideOnAStaleState()
    {
        var id = NewId();
        var stream = TaskAggregate.StreamId(id);
        var other = new Propeller.Application.Aggregates.CommandHandler(_db.Store, _db.Loader, _db.Snapshots, Microsoft.Extensions.Logging.Abstractions.NullLogger<Propeller.Application.Aggregates.CommandHandler>.Instance);
        await HandleAsync(new CreateTask(id, TaskSpec.Named("add"), T0));
        await HandleAsync(new StartTask(id, T0));
        await HandleAsync(new DispatchTask(id, "p1", T0));

        // The other node completes the task; this node's cache still says Running.
        (await other.HandleAsync(TaskAggregate.Decider, stream, new RecordResult(id, "42", null, T0.AddSeconds(1)), Meta(), Ct)).Version.ShouldBe(4);
        _db.Commands.Cache.TryGet<TaskState>(stream, out var stale).ShouldBeTrue();
        stale.State.Status.ShouldBe(TaskStatus.Running);

        // A stop decided on the stale state would append an interruption; the append's version check sends it back to a load.
        var stop = await HandleAsync(new StopTask(id, "user", T0.AddSeconds(2)));
        stop.State.Status.ShouldBe(TaskStatus.Completed);
        stop.Appended.ShouldBeEmpty();

        // A repeat decided as a no-op on a stale entry is decided again on a load too.
        (await other.HandleAsync(TaskAggregate.Decider, stream, new StartTask(id, T0.AddSeconds(3)), Meta(), Ct)).State.Status.ShouldBe(TaskStatus.Scheduled);
        _db.Commands.Cache.Set(stream, stale.State with { Status = TaskStatus.Scheduled }, 5);
        var repeat = await HandleAsync(new StartTask(id, T0.AddSeconds(4)));
        repeat.Appended.ShouldBeEmpty();
        repeat.Version.ShouldBe(5);
        (await _db.ScalarAsync<long>("select version from {schema}.mt_streams where id = $1", id.Value)).ShouldBe(5);
    }

    [Fact]
    public async Task RepeatedCommand_AppendsNothing_AndRejectionIsAValue()
    {
        var id = NewId();
        await HandleAsync(new CreateTask(id, TaskSpec.Named("add"), T0));
        await HandleAsync(new StartTask(id, T0));

        var repeat = await HandleAsync(new StartTask(id, T0.AddSeconds(1)));
        repeat.Appended.ShouldBeEmpty();
        repeat.Version.ShouldBe(2);

        var rejected = await HandleAsync(new SkipTask(id, "x", T0));
        rejected.Rejection!.Kind.ShouldBe(RejectionKind.Conflict);
        (await _db.ScalarAsync<long>("select version from {schema}.mt_streams where id = $1", id.Value)).ShouldBe(2);
    }

    [Fact]
    public async Task ConcurrentCommandsOnOneTask_AreRetriedAndNeverLost()
    {
        var id = NewId();
        await HandleAsync(new CreateTask(id, TaskSpec.Named("add"), T0));

        // 12 concurrent updates, each a different spec: every one must land as its own event.
        await Task.WhenAll(Enumerable.Range(1, 12).Select(i => Task.Run(() => HandleAsync(new UpdateTask(id, TaskSpec.Named($"v{i}"), T0.AddSeconds(i))), Ct)));

        var stream = await _db.Store.ReadStreamAsync(TaskAggregate.StreamId(id), StreamReadOptions.All, Ct);
        stream!.Events.Count(e => e.Data is TaskEvent.TaskUpdated).ShouldBe(12);
    }

    [Fact]
    public async Task Snapshot_IsSavedByPolicy_AndLoadingUsesSnapshotPlusTail()
    {
        var id = NewId();
        var streamId = TaskAggregate.StreamId(id);
        await HandleAsync(new CreateTask(id, TaskSpec.Named("add"), T0));
        for (var i = 1; i <= 60; i++)
        {
            await HandleAsync(new UpdateTask(id, TaskSpec.Named($"v{i}"), T0.AddSeconds(i)));
        }

        var snapshot = await _db.Snapshots.LoadAsync<TaskState>(streamId, "task_state.v1", Ct);
        snapshot.ShouldNotBeNull();
        snapshot.Version.ShouldBe(50);
        snapshot.State.Spec!.Name.ShouldBe("v49");

        // Prove the loader starts from the snapshot: doctor it, and the doctored field survives the tail fold.
        await _db.Snapshots.SaveAsync(streamId, "task_state.v1", 51, snapshot.State with { Results = "from-snapshot" }, Ct);
        var loaded = await _db.Loader.LoadAsync(TaskAggregate.Decider, streamId, Ct);
        loaded.State.Results.ShouldBe("from-snapshot");
        loaded.State.Spec!.Name.ShouldBe("v60");
        loaded.Version.ShouldBe(61);

        // A snapshot of another type alias (an older state shape) is ignored.
        (await _db.Snapshots.LoadAsync<TaskState>(streamId, "task_state.v0", Ct)).ShouldBeNull();
    }
}
