using System.Text;
using Marten;
using Microsoft.Extensions.Logging.Abstractions;
using Propeller.Application.Aggregates;
using Propeller.Application.EventStore;
using Propeller.Application.Messaging;
using Propeller.Application.Tasks;
using Propeller.Domain.Tasks;
using Propeller.Infrastructure.MartenStore;
using Propeller.Infrastructure.Tests.Support;
using static Propeller.Infrastructure.Tests.Support.TestEvents;

namespace Propeller.Infrastructure.Tests.MartenStore;

/// <summary>
/// Group commit on Marten (ADR 0010): concurrent appends to distinct streams share one Marten session and one
/// transaction, with their inline views (the TaskState documents) and outbox rows; each keeps its expected version, its metadata and its
/// own outcome (a conflicting append fails alone and its command is retried; the others commit).
/// </summary>
public sealed class MartenGroupCommitTests : IAsyncLifetime
{
    private TestDatabase _db = null!;
    private DocumentStore _marten = null!;
    private MartenEventStore _store = null!;

    public async ValueTask InitializeAsync()
    {
        _db = await TestDatabase.CreateAsync("marten_group", o => o.GroupCommit.MaxConcurrentGroups = 1);
        (_marten, _store) = (_db.Marten, _db.Store);
    }

    public async ValueTask DisposeAsync()
    {
        await _db.DisposeAsync();
    }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task ConcurrentAppends_ShareTransactions_AndEachGetsItsVersionsAndMetadata()
    {
        const int streams = 32;
        const int appendsPerStream = 4;
        var results = new System.Collections.Concurrent.ConcurrentBag<(TaskId Id, int N, AppendResult Result)>();

        await Task.WhenAll(Enumerable.Range(0, streams).Select(_ => Task.Run(
            async () =>
            {
                var id = NewId();
                var stream = TaskAggregate.StreamId(id);
                for (var n = 1; n <= appendsPerStream; n++)
                {
                    object @event = n == 1 ? Created(id) : Numbered(id, n);
                    var metadata = new EventMetadata($"corr-{stream}-{n}", null, $"user-{n}", T0.AddSeconds(n), new Dictionary<string, string> { ["n"] = $"{n}" });
                    var result = await _store.AppendAsync(stream, TaskAggregate.StreamType, ExpectedVersion.Exact(n - 1), [@event], metadata, Ct);
                    results.Add((id, n, result));
                }
            },
            Ct)));

        results.Count.ShouldBe(streams * appendsPerStream);
        foreach (var (id, n, result) in results)
        {
            var stream = TaskAggregate.StreamId(id);
            result.NextVersion.ShouldBe(n);
            (await _db.ScalarAsync<string>("select correlation_id || '|' || user_name || '|' || (headers->>'n') from {schema}.mt_events where stream_id = $1 and version = $2", id.Value, (long)n))
                .ShouldBe($"corr-{stream}-{n}|user-{n}|{n}");
        }

        (await _db.ScalarAsync<long>("select count(*) from {schema}.mt_events")).ShouldBe(streams * appendsPerStream);
        (await _db.ScalarAsync<long>("select count(*) from {schema}.mt_doc_taskstate where (data->>'attempt')::int = $1", appendsPerStream)).ShouldBe(streams);
        (await _db.ScalarAsync<long>("select count(*) from {schema}.mt_streams where version <> $1", (long)appendsPerStream)).ShouldBe(0);

        // Fewer transactions than appends: some appends shared one (xmin is the inserting transaction).
        (await _db.ScalarAsync<long>("select count(distinct xmin::text) from {schema}.mt_events")).ShouldBeLessThan(streams * appendsPerStream);
    }

    [Fact]
    public async Task AConflictInAGroup_FailsOnlyThatAppend_TheOthersCommit()
    {
        var blocked = NewId();
        var existing = NewId();
        await _store.AppendAsync(TaskAggregate.StreamId(blocked), TaskAggregate.StreamType, ExpectedVersion.NoStream, [Created(blocked)], Meta(), Ct);
        await _store.AppendAsync(TaskAggregate.StreamId(existing), TaskAggregate.StreamType, ExpectedVersion.NoStream, [Created(existing)], Meta(), Ct);

        // Hold the first stream's row in another transaction, so the next append's group waits on it while the three
        // appends after it queue up (one group at a time in this fixture) and then go as one group.
        await using var holder = await _db.DataSource.OpenConnectionAsync(Ct);
        await using var hold = await holder.BeginTransactionAsync(Ct);
        await using (var take = new Npgsql.NpgsqlCommand($"select id from {_db.Quoted}.mt_streams where id = $1 for update", holder, hold))
        {
            take.Parameters.Add(new Npgsql.NpgsqlParameter { Value = blocked.Value });
            await take.ExecuteNonQueryAsync(Ct);
        }

        var first = _store.AppendAsync(TaskAggregate.StreamId(blocked), TaskAggregate.StreamType, ExpectedVersion.Exact(1), [Numbered(blocked, 2)], Meta(), Ct);
        await TestDatabase.WaitUntilAsync(async () => await _db.ScalarAsync<long>("select count(*) from pg_locks where not granted") > 0);
        var a = NewId();
        var c = NewId();
        var okA = _store.AppendAsync(TaskAggregate.StreamId(a), TaskAggregate.StreamType, ExpectedVersion.NoStream, [Created(a)], Meta(1), Ct);
        var conflicting = _store.AppendAsync(TaskAggregate.StreamId(existing), TaskAggregate.StreamType, ExpectedVersion.NoStream, [Created(existing)], Meta(2), Ct);
        var okC = _store.AppendAsync(TaskAggregate.StreamId(c), TaskAggregate.StreamType, ExpectedVersion.NoStream, [Created(c)], Meta(3), Ct);
        await hold.RollbackAsync(Ct);

        (await first).NextVersion.ShouldBe(2);
        (await okA).NextVersion.ShouldBe(1);
        (await okC).NextVersion.ShouldBe(1);
        await Should.ThrowAsync<ConcurrencyException>(() => conflicting);
        (await _db.ScalarAsync<long>("select count(*) from {schema}.mt_events where stream_id = $1", existing.Value)).ShouldBe(1);
        (await _db.ScalarAsync<long>("select count(*) from {schema}.mt_doc_taskstate where id = any($1)", (object)new[] { existing.Value, a.Value, c.Value })).ShouldBe(3);
    }

    [Fact]
    public async Task ConcurrentCommandsOnManyTasks_OneConflictRetried_NoneLost()
    {
        var loader = new AggregateLoader(_store);
        var ids = Enumerable.Range(0, 8).Select(_ => NewId()).ToArray();
        var creator = new StreamCommands(_store, loader);
        await Task.WhenAll(ids.Select(id => creator.HandleAsync(TaskAggregate.Decider, TaskAggregate.StreamId(id), new TaskCommand.CreateTask(id, TaskSpec.Named("v0"), T0), Meta(), Ct)));

        // Two writers per task (as on two nodes): the groups mix tasks, and one of each pair loses.
        var results = await Task.WhenAll(ids.SelectMany(id => Enumerable.Range(1, 2).Select(n =>
            new StreamCommands(_store, loader).HandleAsync(
                TaskAggregate.Decider, TaskAggregate.StreamId(id), new TaskCommand.UpdateTask(id, TaskSpec.Named($"v{n}"), T0.AddSeconds(n)), Meta(n), Ct))));

        results.ShouldAllBe(r => !r.IsRejected);
        foreach (var id in ids)
        {
            var history = (await _store.ReadStreamAsync(TaskAggregate.StreamId(id), StreamReadOptions.All, Ct))!;
            history.Events.Select(e => e.Version).ShouldBe([1, 2, 3]);
            history.Events.Skip(1).Select(e => ((TaskEvent.TaskUpdated)e.Data).Spec.Name).Order().ShouldBe(["v1", "v2"]);
        }

        (await _db.ScalarAsync<long>("select count(*) from {schema}.mt_doc_taskstate where data->'spec'->>'name' in ('v1', 'v2')")).ShouldBe(ids.Length);
    }
}
