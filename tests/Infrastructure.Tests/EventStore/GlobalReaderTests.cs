using System.Collections.Concurrent;
using Npgsql;
using NpgsqlTypes;
using Propeller.Application.EventStore;
using Propeller.Application.Tasks;
using Propeller.Infrastructure.Tests.Support;
using static Propeller.Infrastructure.Tests.Support.TestEvents;

namespace Propeller.Infrastructure.Tests.EventStore;

/// <summary>
/// The global reader must never skip a committed event, even when a slow transaction took a lower sequence number
/// and commits after later ones (the gap problem of sequence-based cursors, reference A7).
/// </summary>
[Collection(QuietClusterCollection.Name)]
public sealed class GlobalReaderTests : IAsyncLifetime
{
    private TestDatabase _db = null!;

    public async ValueTask InitializeAsync() => _db = await TestDatabase.CreateAsync("es_reader");

    public ValueTask DisposeAsync() => _db.DisposeAsync();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>Begins a transaction that appends one event through append_events and stays open until disposed.</summary>
    private async Task<(NpgsqlConnection Connection, NpgsqlTransaction Transaction)> BeginSlowAppendAsync(string stream)
    {
        var connection = await _db.DataSource.OpenConnectionAsync(Ct);
        var transaction = await connection.BeginTransactionAsync(Ct);
        var (type, json) = _db.Serializer.Serialize(Created(NewId(), "slow"));
        await using var command = new NpgsqlCommand($"select * from {_db.Quoted}.append_events($1, 'task', -2, $2, $3, $4, $5, now(), false)", connection, transaction);
        command.Parameters.AddWithValue(stream);
        command.Parameters.AddWithValue(new[] { Guid.CreateVersion7() });
        command.Parameters.AddWithValue(new[] { type });
        command.Parameters.Add(new NpgsqlParameter { Value = new[] { json }, NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Jsonb });
        command.Parameters.Add(new NpgsqlParameter { Value = new[] { "{}" }, NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Jsonb });
        await command.ExecuteNonQueryAsync(Ct);
        return (connection, transaction);
    }

    private async Task<List<StoredEvent>> DrainAsync(GlobalPosition from)
    {
        var all = new List<StoredEvent>();
        while (true)
        {
            var page = await _db.Store.ReadAllAsync(from, 100, null, Ct);
            if (page.Count == 0)
            {
                return all;
            }

            all.AddRange(page);
            from = page[^1].Position;
        }
    }

    [Fact]
    public async Task SlowTransactionWithLowerSequence_IsNotSkipped_WhileLaterCommitsAreHeldBack()
    {
        var (connection, slow) = await BeginSlowAppendAsync("task-slow");
        await _db.Store.AppendAsync("task-fast-1", "task", ExpectedVersion.Any, [Created(NewId(), "fast1")], Meta(), Ct);
        await _db.Store.AppendAsync("task-fast-2", "task", ExpectedVersion.Any, [Created(NewId(), "fast2")], Meta(), Ct);

        // A sequence-based cursor would now see fast-1 and fast-2 (higher seq), checkpoint past them, and never see slow.
        (await _db.ScalarAsync<long>("select count(*) from {schema}.events")).ShouldBe(2);
        var whileSlowIsOpen = await DrainAsync(GlobalPosition.Start);
        whileSlowIsOpen.ShouldBeEmpty();

        await slow.CommitAsync(Ct);
        await connection.DisposeAsync();

        var afterCommit = await DrainAsync(GlobalPosition.Start);
        afterCommit.Select(e => e.StreamId).ShouldBe(["task-slow", "task-fast-1", "task-fast-2"]);
        afterCommit[0].Position.Sequence.ShouldBeLessThan(afterCommit[1].Position.Sequence);
    }

    [Fact]
    public async Task RolledBackTransaction_LeavesNoGapThatStallsTheReader()
    {
        var (connection, slow) = await BeginSlowAppendAsync("task-rolled-back");
        await _db.Store.AppendAsync("task-after", "task", ExpectedVersion.Any, [Created(NewId())], Meta(), Ct);

        await slow.RollbackAsync(Ct);
        await connection.DisposeAsync();

        (await DrainAsync(GlobalPosition.Start)).Select(e => e.StreamId).ShouldBe(["task-after"]);
    }

    [Fact]
    public async Task ConcurrentWritersWithDeliberatelySlowTransactions_ReaderSeesEveryEventExactlyOnce()
    {
        const int writers = 8;
        const int appendsPerWriter = 40;
        var seen = new ConcurrentQueue<StoredEvent>();
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(Ct);

        var reader = Task.Run(async () =>
        {
            var checkpoint = GlobalPosition.Start;
            while (true)
            {
                var done = stop.IsCancellationRequested;
                var page = await _db.Store.ReadAllAsync(checkpoint, 50, null, Ct);
                foreach (var e in page)
                {
                    e.Position.ShouldBeGreaterThan(checkpoint);
                    seen.Enqueue(e);
                    checkpoint = e.Position;
                }

                if (page.Count == 0)
                {
                    // Done once every committed event was read: xmin is cluster-wide, so transactions of other tests
                    // running in parallel may hold the cursor back for a while; they never make it skip.
                    if (done && seen.Count >= await _db.ScalarAsync<long>("select count(*) from {schema}.events"))
                    {
                        return;
                    }

                    await Task.Delay(2, Ct);
                }
            }
        }, Ct);

        await Task.WhenAll(Enumerable.Range(0, writers).Select(w => Task.Run(async () =>
        {
            var random = new Random(w);
            for (var i = 0; i < appendsPerWriter; i++)
            {
                var stream = $"task-w{w}";
                if (random.Next(4) == 0)
                {
                    // Hold the transaction open after inserting, so later writers commit first with higher sequences.
                    var (connection, slow) = await BeginSlowAppendAsync(stream);
                    await Task.Delay(random.Next(5, 40), Ct);
                    await slow.CommitAsync(Ct);
                    await connection.DisposeAsync();
                }
                else
                {
                    await _db.Store.AppendAsync(stream, "task", ExpectedVersion.Any, [Numbered(NewId(), i)], Meta(), Ct);
                }
            }
        }, Ct)));

        await stop.CancelAsync();
        await reader.WaitAsync(TimeSpan.FromSeconds(60), Ct);

        var total = await _db.ScalarAsync<long>("select count(*) from {schema}.events");
        total.ShouldBe(writers * appendsPerWriter);
        seen.Count.ShouldBe(writers * appendsPerWriter);
        seen.Select(e => e.EventId).Distinct().Count().ShouldBe(writers * appendsPerWriter);
        foreach (var stream in seen.GroupBy(e => e.StreamId))
        {
            stream.Select(e => e.Version).ShouldBe(Enumerable.Range(1, appendsPerWriter).Select(v => (long)v), $"stream {stream.Key} in version order");
        }
    }

    [Fact]
    public async Task ReadAll_OrdersByTransactionIdAsANumber_AcrossDigitBoundaries()
    {
        // Regression: "order by tx_id" once bound to the selected tx_id::text column, sorting "10" before "9".
        var id = NewId();
        await _db.Store.AppendAsync(TaskAggregate.StreamId(id), "task", ExpectedVersion.Any, [Numbered(id, 1), Numbered(id, 2), Numbered(id, 3)], Meta(), Ct);
        await _db.ExecuteAsync("update {schema}.events set tx_id = (case version when 1 then '9' when 2 then '10' else '100' end)::xid8");

        var first = await _db.Store.ReadAllAsync(GlobalPosition.Start, 2, null, Ct);
        var rest = await _db.Store.ReadAllAsync(first[^1].Position, 10, null, Ct);

        first.Select(e => e.Position.TransactionId).ShouldBe([9UL, 10UL]);
        rest.Select(e => e.Position.TransactionId).ShouldBe([100UL]);
    }

    [Fact]
    public async Task ReadAll_FiltersByEventType()
    {
        var id = NewId();
        await _db.Store.AppendAsync(TaskAggregate.StreamId(id), "task", ExpectedVersion.Any, [Created(id), Numbered(id, 1), Numbered(id, 2)], Meta(), Ct);

        var page = await _db.Store.ReadAllAsync(GlobalPosition.Start, 10, ["task.start_requested.v1"], Ct);

        page.Select(e => e.Version).ShouldBe([2L, 3L]);
    }
}
