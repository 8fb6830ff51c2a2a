using Propeller.Application.EventStore;
using Propeller.Application.Tasks;
using Propeller.Domain.Tasks;
using Propeller.Infrastructure.Tests.Support;
using static Propeller.Domain.Tasks.TaskEvent;
using static Propeller.Infrastructure.Tests.Support.TestEvents;

namespace Propeller.Infrastructure.Tests.EventStore;

/// <summary>The event store port (IEventStore) on Marten: appends, reads, versions, archive, validation, races.</summary>
public sealed class EventStorePortTests : IAsyncLifetime
{
    private TestDatabase _db = null!;

    public async ValueTask InitializeAsync() => _db = await TestDatabase.CreateAsync("es_store");

    public ValueTask DisposeAsync() => _db.DisposeAsync();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Append_ThenRead_RoundTripsEventsAndMetadata()
    {
        var id = NewId();
        var stream = TaskAggregate.StreamId(id);
        var metadata = new EventMetadata("corr-1", "cause-1", "alice", T0.AddMinutes(1), new Dictionary<string, string> { ["plugin"] = "allow" });

        var result = await _db.Store.AppendAsync(stream, "task", ExpectedVersion.NoStream, [Created(id), Numbered(id, 1)], metadata, Ct);

        result.ShouldBe(new AppendResult(stream, 0, 2));
        var read = await _db.Store.ReadStreamAsync(stream, StreamReadOptions.All, Ct);
        read.ShouldNotBeNull();
        read.StreamType.ShouldBe("task");
        read.Version.ShouldBe(2);
        read.Events.Select(e => e.Data).ShouldBe([Created(id), Numbered(id, 1)]);
        read.Events.Select(e => e.Type).ShouldBe(["task.created.v1", "task.start_requested.v1"]);
        read.Events.Select(e => e.Version).ShouldBe([1L, 2L]);
        var meta = read.Events[1].Metadata;
        meta.CorrelationId.ShouldBe("corr-1");
        meta.CausationId.ShouldBe("cause-1");
        meta.UserId.ShouldBe("alice");
        meta.Timestamp.ShouldBe(T0.AddMinutes(1));
        meta.Headers!["plugin"].ShouldBe("allow");
        read.Events[0].Sequence.ShouldBeLessThan(read.Events[1].Sequence);
    }

    [Fact]
    public async Task ReadStream_OfMissingStream_IsNull() =>
        (await _db.Store.ReadStreamAsync("task-missing", StreamReadOptions.All, Ct)).ShouldBeNull();

    [Fact]
    public async Task ExpectedVersion_IsCheckedBeforeAnythingIsInserted()
    {
        var id = NewId();
        var stream = TaskAggregate.StreamId(id);
        await _db.Store.AppendAsync(stream, "task", ExpectedVersion.NoStream, [Created(id)], Meta(), Ct);

        var noStream = await Should.ThrowAsync<ConcurrencyException>(() => _db.Store.AppendAsync(stream, "task", ExpectedVersion.NoStream, [Numbered(id, 1)], Meta(), Ct));
        noStream.StreamId.ShouldBe(stream);
        noStream.Expected.ShouldBe(ExpectedVersion.NoStream);
        noStream.Actual.ShouldBe(1);

        var exact = await Should.ThrowAsync<ConcurrencyException>(() => _db.Store.AppendAsync(stream, "task", ExpectedVersion.Exact(5), [Numbered(id, 1)], Meta(), Ct));
        exact.Actual.ShouldBe(1);
        exact.Expected.Value.ShouldBe(5);

        var missing = await Should.ThrowAsync<ConcurrencyException>(() => _db.Store.AppendAsync("task-nope", "task", ExpectedVersion.Exact(3), [Numbered(id, 1)], Meta(), Ct));
        missing.Actual.ShouldBe(0);

        (await _db.Store.AppendAsync(stream, "task", ExpectedVersion.Exact(1), [Numbered(id, 1)], Meta(), Ct)).NextVersion.ShouldBe(2);
        (await _db.Store.AppendAsync(stream, "task", ExpectedVersion.Any, [Numbered(id, 2), Numbered(id, 3)], Meta(), Ct)).NextVersion.ShouldBe(4);
        (await _db.ScalarAsync<long>("select count(*) from {schema}.mt_events")).ShouldBe(4);
        // Marten's tombstone stream (where it records the sequence numbers a failed append used) has version 0.
        (await _db.ScalarAsync<long>("select count(*) from {schema}.mt_streams where version > 0")).ShouldBe(1);
    }

    [Fact]
    public async Task ReadStream_FromToVersionAndUntilTimestamp()
    {
        var id = NewId();
        var stream = TaskAggregate.StreamId(id);
        for (var i = 1; i <= 5; i++)
        {
            await _db.Store.AppendAsync(stream, "task", ExpectedVersion.Any, [Numbered(id, i)], Meta(i * 10), Ct);
        }

        var slice = await _db.Store.ReadStreamAsync(stream, new StreamReadOptions(FromVersion: 2, ToVersion: 4), Ct);
        slice!.Events.Select(e => e.Version).ShouldBe([2L, 3L, 4L]);
        slice.Version.ShouldBe(5);

        var until = await _db.Store.ReadStreamAsync(stream, new StreamReadOptions(Until: T0.AddSeconds(30)), Ct);
        until!.Events.Select(e => ((TaskStartRequested)e.Data).Attempt).ShouldBe([1, 2, 3]);
    }

    [Fact]
    public async Task ArchivedStream_IsHiddenFromNormalReads_KeptForAudit_AndClosedForAppends()
    {
        var id = NewId();
        var stream = TaskAggregate.StreamId(id);
        await _db.Store.AppendAsync(stream, "task", ExpectedVersion.NoStream, [Created(id)], Meta(), Ct);

        (await _db.Store.ArchiveStreamAsync(stream, Ct)).ShouldBeTrue();

        (await _db.Store.ReadStreamAsync(stream, StreamReadOptions.All, Ct)).ShouldBeNull();
        var audit = await _db.Store.ReadStreamAsync(stream, new StreamReadOptions(IncludeArchived: true), Ct);
        audit!.Archived.ShouldBeTrue();
        audit.Events.Count.ShouldBe(1);
        await Should.ThrowAsync<StreamArchivedException>(() => _db.Store.AppendAsync(stream, "task", ExpectedVersion.Any, [Numbered(id, 1)], Meta(), Ct));
        (await _db.Store.ArchiveStreamAsync("task-unknown", Ct)).ShouldBeFalse();
    }

    [Fact]
    public async Task UnknownAlias_OnRead_IsATypedErrorNamingIt()
    {
        var id = NewId();
        var stream = TaskAggregate.StreamId(id);
        await _db.Store.AppendAsync(stream, "task", ExpectedVersion.NoStream, [Created(id)], Meta(), Ct);
        await _db.ExecuteAsync("update {schema}.mt_events set type = 'task.renamed_by_mistake.v9', mt_dotnet_type = 'Gone.RenamedEvent, Gone' where stream_id = $1", id.Value);

        var ex = await Should.ThrowAsync<UnknownEventTypeException>(() => _db.Store.ReadStreamAsync(stream, StreamReadOptions.All, Ct));

        ex.Alias.ShouldBe("task.renamed_by_mistake.v9");
        ex.StreamId.ShouldBe(stream);
        ex.Version.ShouldBe(1);
        ex.Message.ShouldContain("task.renamed_by_mistake.v9");
    }

    [Theory]
    [InlineData("")]
    [InlineData("   ")]
    public async Task EmptyStreamId_IsAValidationError(string streamId) =>
        await Should.ThrowAsync<EventStoreValidationException>(() => _db.Store.AppendAsync(streamId, "task", ExpectedVersion.Any, [Created(NewId())], Meta(), Ct));

    [Fact]
    public async Task OversizedStreamIdOrNoEvents_IsAValidationError()
    {
        var tooLong = new string('x', 201);
        (await Should.ThrowAsync<EventStoreValidationException>(() => _db.Store.AppendAsync(tooLong, "task", ExpectedVersion.Any, [Created(NewId())], Meta(), Ct)))
            .Message.ShouldContain("201");
        await Should.ThrowAsync<EventStoreValidationException>(() => _db.Store.ReadStreamAsync(tooLong, StreamReadOptions.All, Ct));
        await Should.ThrowAsync<EventStoreValidationException>(() => _db.Store.AppendAsync("task-x", "task", ExpectedVersion.Any, [], Meta(), Ct));
        (await _db.ScalarAsync<long>("select count(*) from {schema}.mt_streams where version > 0")).ShouldBe(0);
    }

    [Fact]
    public async Task UnregisteredEventType_FailsBeforeAnythingIsWritten()
    {
        var id = NewId();
        var stream = TaskAggregate.StreamId(id);

        await Should.ThrowAsync<InvalidOperationException>(() => _db.Store.AppendAsync(stream, "task", ExpectedVersion.Any, [Created(id), new { Not = "registered" }], Meta(), Ct));

        (await _db.Store.ReadStreamAsync(stream, StreamReadOptions.All, Ct)).ShouldBeNull();
    }

    [Fact]
    public async Task OversizedEvent_IsRefusedAndNothingIsHalfWritten()
    {
        var id = NewId();
        var stream = TaskAggregate.StreamId(id);
        var huge = new TaskCreated(id, TaskSpec.Named("big") with { File = new string('A', 5 * 1024 * 1024) }, T0);

        await Should.ThrowAsync<EventStoreValidationException>(() => _db.Store.AppendAsync(stream, "task", ExpectedVersion.Any, [Numbered(id, 1), huge], Meta(), Ct));

        (await _db.ScalarAsync<long>("select count(*) from {schema}.mt_events")).ShouldBe(0);
    }

    [Fact]
    public async Task SixteenWritersRacingOnOneStream_EachVersionWonExactlyOnce_NothingLost()
    {
        var id = NewId();
        var stream = TaskAggregate.StreamId(id);
        const int writers = 16;
        const int eventsPerWriter = 25;
        var conflicts = 0;

        await Task.WhenAll(Enumerable.Range(0, writers).Select(w => Task.Run(async () =>
        {
            var written = 0;
            while (written < eventsPerWriter)
            {
                var current = (await _db.Store.ReadStreamAsync(stream, new StreamReadOptions(FromVersion: long.MaxValue), Ct))?.Version ?? 0;
                try
                {
                    await _db.Store.AppendAsync(stream, "task", ExpectedVersion.Exact(current), [Numbered(id, (w * 1000) + written)], Meta(), Ct);
                    written++;
                }
                catch (ConcurrencyException ex)
                {
                    ex.Actual.ShouldBeGreaterThan(current);
                    Interlocked.Increment(ref conflicts);
                }
            }
        }, Ct)));

        var read = await _db.Store.ReadStreamAsync(stream, StreamReadOptions.All, Ct);
        read!.Version.ShouldBe(writers * eventsPerWriter);
        read.Events.Select(e => e.Version).ShouldBe(Enumerable.Range(1, writers * eventsPerWriter).Select(v => (long)v));
        var payloads = read.Events.Select(e => ((TaskStartRequested)e.Data).Attempt).ToList();
        payloads.Distinct().Count().ShouldBe(writers * eventsPerWriter);
        payloads.ShouldBe(Enumerable.Range(0, writers).SelectMany(w => Enumerable.Range(0, eventsPerWriter).Select(i => (w * 1000) + i)), ignoreOrder: true);
        conflicts.ShouldBeGreaterThan(0);
        (await _db.ScalarAsync<long>("select count(*) from {schema}.mt_events")).ShouldBe(writers * eventsPerWriter);
    }

    [Fact]
    public async Task ConcurrentCreatorsOfOneStream_OneWinsWithNoStream()
    {
        var id = NewId();
        var stream = TaskAggregate.StreamId(id);

        var results = await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => Task.Run(async () =>
        {
            try
            {
                await _db.Store.AppendAsync(stream, "task", ExpectedVersion.NoStream, [Created(id)], Meta(), Ct);
                return true;
            }
            catch (ConcurrencyException)
            {
                return false;
            }
        }, Ct)));

        results.Count(r => r).ShouldBe(1);
        (await _db.Store.ReadStreamAsync(stream, StreamReadOptions.All, Ct))!.Version.ShouldBe(1);
    }
}
