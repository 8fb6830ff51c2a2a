using System.Text;
using Propeller.Application.EventStore;
using Propeller.Application.Messaging;
using Propeller.Infrastructure.Projections;
using Propeller.Infrastructure.Tests.Support;
using static Propeller.Infrastructure.Tests.Support.TestEvents;

namespace Propeller.Infrastructure.Tests.EventStore;

/// <summary>
/// Group commit on a real PostgreSQL: concurrent one-batch appends (exact version, an inline projection without
/// positions, outbox rows) share transactions and each still gets exactly its own outcome.
/// </summary>
public sealed class GroupCommitTests : IAsyncLifetime
{
    private readonly RecordingProjection _projection = new("grouped", null, usesGlobalPositions: false);
    private TestDatabase _db = null!;

    public async ValueTask InitializeAsync()
    {
        _db = await TestDatabase.CreateAsync("es_group", c => c.Add(_projection, ProjectionLifecycle.Inline), o => o.GroupCommit.MaxConcurrentGroups = 1);
        await _db.Daemon().EnsureAsync(Ct);
    }

    public ValueTask DisposeAsync() => _db.DisposeAsync();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task ConcurrentAppends_ShareTransactions_AndEachGetsItsVersionsAndOutboxRows()
    {
        const int streams = 48;
        const int appendsPerStream = 5;
        var results = new System.Collections.Concurrent.ConcurrentBag<(string Stream, int N, AppendResult Result)>();

        await Task.WhenAll(Enumerable.Range(0, streams).Select(s => Task.Run(
            async () =>
            {
                var id = NewId();
                var stream = $"task-g{s}";
                for (var n = 1; n <= appendsPerStream; n++)
                {
                    object @event = n == 1 ? Created(id) : Numbered(id, n);
                    var message = new OutgoingMessage("topic/" + stream, Encoding.UTF8.GetBytes($"{stream}#{n}"));
                    var result = await _db.Store.AppendAsync(stream, "task", ExpectedVersion.Exact(n - 1), [@event], Meta(), [message], Ct);
                    results.Add((stream, n, result));
                }
            },
            Ct)));

        results.Count.ShouldBe(streams * appendsPerStream);
        foreach (var (stream, n, result) in results)
        {
            result.NextVersion.ShouldBe(n);
            result.OutboxIds.Count.ShouldBe(1);
            (await _db.ScalarAsync<byte[]>("select payload from {schema}.outbox where id = $1", result.OutboxIds[0])).ShouldBe(Encoding.UTF8.GetBytes($"{stream}#{n}"));
        }

        (await _db.ScalarAsync<long>("select count(*) from {schema}.events")).ShouldBe(streams * appendsPerStream);
        (await _db.ScalarAsync<long>("select count(*) from {schema}.seen_grouped")).ShouldBe(streams * appendsPerStream);
        (await _db.ScalarAsync<long>("select count(*) from (select stream_id from {schema}.events group by stream_id having array_agg(version order by tx_id, seq) <> array[1,2,3,4,5]::bigint[]) x")).ShouldBe(0);

        // Fewer transactions than appends: some appends shared one.
        (await _db.ScalarAsync<long>("select count(distinct tx_id) from {schema}.events")).ShouldBeLessThan(streams * appendsPerStream);
    }

    [Fact]
    public async Task AConflictInAGroup_FailsOnlyThatAppend_TheOthersCommit()
    {
        var blocked = NewId();
        await _db.Store.AppendAsync("task-blocked", "task", ExpectedVersion.NoStream, [Created(blocked)], Meta(), [], Ct);
        var existing = NewId();
        await _db.Store.AppendAsync("task-existing", "task", ExpectedVersion.NoStream, [Created(existing)], Meta(), [], Ct);

        // Hold the first stream's lock in another session, so the next append's group waits on it while the three
        // appends after it queue up (one group at a time in this fixture) and then go as one group.
        await using var holder = await _db.DataSource.OpenConnectionAsync(Ct);
        await using (var take = new Npgsql.NpgsqlCommand("select pg_advisory_lock(hashtextextended('task-blocked', 7346))", holder))
        {
            await take.ExecuteNonQueryAsync(Ct);
        }

        var first = _db.Store.AppendAsync("task-blocked", "task", ExpectedVersion.Exact(1), [Numbered(blocked, 2)], Meta(), [], Ct);
        await TestDatabase.WaitUntilAsync(async () => await _db.ScalarAsync<long>("select count(*) from pg_locks where locktype = 'advisory' and not granted") > 0);
        var a = NewId();
        var c = NewId();
        var okA = _db.Store.AppendAsync("task-a", "task", ExpectedVersion.NoStream, [Created(a)], Meta(), [], Ct);
        var conflicting = _db.Store.AppendAsync("task-existing", "task", ExpectedVersion.NoStream, [Created(existing)], Meta(), [], Ct);
        var okC = _db.Store.AppendAsync("task-c", "task", ExpectedVersion.NoStream, [Created(c)], Meta(), [], Ct);
        await using (var release = new Npgsql.NpgsqlCommand("select pg_advisory_unlock(hashtextextended('task-blocked', 7346))", holder))
        {
            await release.ExecuteNonQueryAsync(Ct);
        }

        (await first).NextVersion.ShouldBe(2);
        (await okA).NextVersion.ShouldBe(1);
        (await okC).NextVersion.ShouldBe(1);
        var error = await Should.ThrowAsync<ConcurrencyException>(() => conflicting);
        error.Actual.ShouldBe(1);
        (await _db.ScalarAsync<long>("select count(*) from {schema}.events where stream_id = 'task-existing'")).ShouldBe(1);
        (await _db.ScalarAsync<long>("select count(*) from {schema}.seen_grouped where stream_id = 'task-existing'")).ShouldBe(1);
        (await _db.ScalarAsync<long>("select count(*) from {schema}.seen_grouped where stream_id in ('task-a', 'task-c')")).ShouldBe(2);
    }

    [Fact]
    public async Task AStatementFailingAfterTheAppendInTheBatch_RollsBackTheEventsToo()
    {
        await using var failing = await TestDatabase.CreateAsync("es_group_fail", c => c.Add(new FailingSqlProjection(), ProjectionLifecycle.Inline));

        await Should.ThrowAsync<Npgsql.PostgresException>(() =>
            failing.Store.AppendAsync("task-f", "task", ExpectedVersion.NoStream, [Created(NewId())], Meta(), [new OutgoingMessage("t", new byte[] { 1 })], Ct));

        (await failing.ScalarAsync<long>("select count(*) from {schema}.events")).ShouldBe(0);
        (await failing.ScalarAsync<long>("select count(*) from {schema}.streams")).ShouldBe(0);
        (await failing.ScalarAsync<long>("select count(*) from {schema}.outbox")).ShouldBe(0);
    }

    [Fact]
    public async Task WithGroupingOff_AppendsStillCommitOneByOne()
    {
        await using var single = await TestDatabase.CreateAsync("es_group_off", c => c.Add(new RecordingProjection("single", null, usesGlobalPositions: false), ProjectionLifecycle.Inline), o => o.GroupCommit.MaxConcurrentGroups = 0);
        await single.Daemon().EnsureAsync(Ct);

        await Task.WhenAll(Enumerable.Range(0, 8).Select(i => single.Store.AppendAsync($"task-s{i}", "task", ExpectedVersion.NoStream, [Created(NewId())], Meta(), [new OutgoingMessage("t", new byte[] { 1 })], Ct)));

        (await single.ScalarAsync<long>("select count(distinct tx_id) from {schema}.events")).ShouldBe(8);
        (await single.ScalarAsync<long>("select count(*) from {schema}.outbox")).ShouldBe(8);
    }

    /// <summary>An inline projection (no positions) whose write fails in the database, after the append ran.</summary>
    private sealed class FailingSqlProjection : IProjection
    {
        public string Name => "failing";

        public bool UsesGlobalPositions => false;

        public IReadOnlyCollection<string>? EventTypes => null;

        public Task EnsureSchemaAsync(ProjectionContext context, CancellationToken cancellationToken) => Task.CompletedTask;

        public Task ApplyAsync(ProjectionContext context, IReadOnlyList<StoredEvent> events, CancellationToken cancellationToken)
        {
            context.Add("select 1 / 0");
            return Task.CompletedTask;
        }

        public Task ResetAsync(ProjectionContext context, CancellationToken cancellationToken) => Task.CompletedTask;
    }
}
