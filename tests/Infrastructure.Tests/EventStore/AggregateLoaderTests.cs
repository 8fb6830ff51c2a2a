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
        await Task.WhenAll(Enumerable.Range(1, 12).Select(i => Task.Run(() => HandleAsync(new UpdateTask(id, new TaskSpecPatch { Name = $"v{i}" }, T0.AddSeconds(i))), Ct)));

        var stream = await _db.Store.ReadStreamAsync(TaskAggregate.StreamId(id), StreamReadOptions.All, Ct);
        stream!.Events.Count(e => e.Data is TaskEvent.TaskUpdated).ShouldBe(12);
    }

    [Fact]
    public async Task Loading_FoldsTheWholeStream_AndAVersionFoldsOnlyItsPrefix()
    {
        var id = NewId();
        var streamId = TaskAggregate.StreamId(id);
        await HandleAsync(new CreateTask(id, TaskSpec.Named("add"), T0));
        for (var i = 1; i <= 60; i++)
        {
            await HandleAsync(new UpdateTask(id, new TaskSpecPatch { Name = $"v{i}" }, T0.AddSeconds(i)));
        }

        var atVersion51 = await _db.Loader.LoadAsync(TaskAggregate.Decider, streamId, new StreamReadOptions(ToVersion: 51), Ct);
        atVersion51.State.Spec!.Name.ShouldBe("v50");
        atVersion51.Version.ShouldBe(51);
        var latest = await _db.Loader.LoadAsync(TaskAggregate.Decider, streamId, Ct);
        latest.State.Spec!.Name.ShouldBe("v60");
        latest.Version.ShouldBe(61);
    }
}
