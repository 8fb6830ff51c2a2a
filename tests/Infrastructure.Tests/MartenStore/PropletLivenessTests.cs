using Marten;
using Npgsql;
using Propeller.Application.EventStore;
using Propeller.Application.Proplets;
using Propeller.Domain.Proplets;
using Propeller.Infrastructure.MartenStore;
using Propeller.Infrastructure.Tests.Support;
using static Propeller.Domain.Proplets.PropletEvent;
using static Propeller.Infrastructure.Tests.Support.TestEvents;

namespace Propeller.Infrastructure.Tests.MartenStore;

/// <summary>
/// A proplet's liveness and held-task report beside its document (<see cref="PropletLiveness"/>, ADR 0010 amended):
/// not put back by a proplet event's projection, each heartbeat once however many nodes record it, the newest never
/// moved back by concurrent recordings, and a heartbeat waiting for a liveness check that locked the row.
/// </summary>
public sealed class PropletLivenessTests : IAsyncLifetime
{
    private TestDatabase _db = null!;

    public async ValueTask InitializeAsync() => _db = await TestDatabase.CreateAsync("proplet_liveness");

    public async ValueTask DisposeAsync() => await _db.DisposeAsync();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static Guid KeyOf(PropletId id) => MartenStreamIds.ToGuid(PropletAggregate.StreamId(id));

    private async Task<PropletId> RegisterAsync(string name)
    {
        var id = new PropletId(name);
        await _db.Store.AppendAsync(
            PropletAggregate.StreamId(id), PropletAggregate.StreamType, ExpectedVersion.NoStream, [new PropletRegistered(id, "Abbott-Crane", PropletMetadata.Empty, T0)], Meta(), Ct);
        return id;
    }

    private Task WentOfflineAsync(PropletId id, int version) =>
        _db.Store.AppendAsync(PropletAggregate.StreamId(id), PropletAggregate.StreamType, ExpectedVersion.Exact(version), [new PropletWentOffline(id, "last will", T0.AddSeconds(1))], Meta(), Ct);

    /// <summary>
    /// A database from before the liveness table: its proplet documents carry last_alive_at, alive_history and
    /// held_reported_at. The schema step carries them into rows (not over rows that exist): a proplet that died around
    /// the upgrade had no last sign here and was never found silent.
    /// </summary>
    [Fact]
    public async Task GivenDocumentsFromBeforeTheTable_WhenTheSchemaIsApplied_ThenTheirLivenessIsCarriedOver()
    {
        var old = await RegisterAsync("old");
        var current = await RegisterAsync("current");
        await new MartenPropletRegistry(_db.Marten, new FixedClock(T0.AddMinutes(1))).RecordHeartbeatAsync(current, T0.AddSeconds(30), Ct);
        const string before = """{"last_alive_at":"2026-01-01T00:00:10Z","alive_history":["2026-01-01T00:00:05Z","2026-01-01T00:00:10Z"],"held_reported_at":"2026-01-01T00:00:07Z"}""";
        await using (var write = _db.DataSource.CreateCommand($"update {_db.Quoted}.mt_doc_propletdocument set data = data || $1::jsonb"))
        {
            write.Parameters.Add(new NpgsqlParameter { Value = before });
            await write.ExecuteNonQueryAsync(Ct);
        }

        await new MartenSchemaHostedService(_db.Marten, _db.DataSource, _db.Options, new ListLogger<MartenSchemaHostedService>()).StartAsync(Ct);

        await using var session = _db.Marten.QuerySession();
        var carried = (await PropletLiveness.LoadAsync(session, KeyOf(old), Ct)).ShouldNotBeNull();
        carried.LastAliveAt.ShouldBe(DateTimeOffset.Parse("2026-01-01T00:00:10Z"));
        carried.AliveHistory.ShouldBe([DateTimeOffset.Parse("2026-01-01T00:00:05Z"), DateTimeOffset.Parse("2026-01-01T00:00:10Z")]);
        carried.HeldReportedAt.ShouldBe(DateTimeOffset.Parse("2026-01-01T00:00:07Z"));
        (await PropletLiveness.LoadAsync(session, KeyOf(current), Ct)).ShouldNotBeNull().LastAliveAt.ShouldBe(T0.AddSeconds(30));
    }

    /// <summary>
    /// A node loads the proplet for writing (its heartbeat found it offline); another records the proplet's report of
    /// what it holds, and a heartbeat; the first commits PropletCameOnline. Its inline projection wrote the document back
    /// whole with the report time it had loaded (none), and the Last Will's re-dispatch then moved the tasks the proplet
    /// still ran.
    /// </summary>
    [Fact]
    public async Task GivenAProjectionThatLoadedTheProplet_WhenAHeldReportAndAHeartbeatCommitBeforeIt_ThenBothSurvive()
    {
        var id = await RegisterAsync("held");
        await WentOfflineAsync(id, 1);
        var registry = new MartenPropletRegistry(_db.Marten, new FixedClock(T0.AddMinutes(1)));

        await using var writer = _db.Marten.LightweightSession();
        var stream = await writer.Events.FetchForWriting<PropletDocument>(KeyOf(id), Ct);
        await using (var other = _db.Marten.LightweightSession())
        {
            PropletLiveness.RecordHeldReport(other, KeyOf(id), T0.AddSeconds(2));
            await other.SaveChangesAsync(Ct);
        }

        (await registry.RecordHeartbeatAsync(id, T0.AddSeconds(2), Ct)).ShouldBe(true);
        stream.AppendOne(new PropletCameOnline(id, T0.AddSeconds(3)));
        await writer.SaveChangesAsync(Ct);

        await using var query = _db.Marten.QuerySession();
        (await PropletLiveness.LoadAsync(query, KeyOf(id), Ct))!.HeldReportedAt.ShouldBe(T0.AddSeconds(2));
        var view = (await registry.GetAsync(id, Ct))!;
        (view.Offline, view.LastAliveAt).ShouldBe((false, T0.AddSeconds(2)));
    }

    /// <summary>Every node records each heartbeat, a few milliseconds apart: it is one entry of the history, not one per node.</summary>
    [Fact]
    public async Task GivenTwoNodes_WhenEachRecordsTheSameHeartbeat_ThenItIsOneEntry()
    {
        var id = await RegisterAsync("twice");
        var at = T0.AddSeconds(1);
        (await new MartenPropletRegistry(_db.Marten, new FixedClock(at)).RecordHeartbeatAsync(id, at, Ct)).ShouldBe(false);
        (await new MartenPropletRegistry(_db.Marten, new FixedClock(at.AddMilliseconds(3))).RecordHeartbeatAsync(id, at.AddMilliseconds(3), Ct)).ShouldBe(false);

        var view = (await new MartenPropletRegistry(_db.Marten, TimeProvider.System).GetAsync(id, Ct))!;
        view.AliveHistory.ShouldBe([at]);
        view.LastAliveAt.ShouldBe(at.AddMilliseconds(3));
    }

    [Fact]
    public async Task GivenFiveHeartbeatsASecondApart_WhenTwoNodesRecordEach_ThenTheHistoryHasFive()
    {
        var id = await RegisterAsync("five");
        var registry = new MartenPropletRegistry(_db.Marten, new FixedClock(T0.AddMinutes(1)));
        for (var n = 1; n <= 5; n++)
        {
            await registry.RecordHeartbeatAsync(id, T0.AddSeconds(n), Ct);
            await registry.RecordHeartbeatAsync(id, T0.AddSeconds(n).AddMilliseconds(2), Ct);
        }

        var view = (await registry.GetAsync(id, Ct))!;
        view.AliveHistory.ShouldBe([.. Enumerable.Range(1, 5).Select(n => T0.AddSeconds(n))]);
        view.LastAliveAt.ShouldBe(T0.AddSeconds(5).AddMilliseconds(2));
        (await _db.Store.ReadStreamAsync(PropletAggregate.StreamId(id), StreamReadOptions.All, Ct))!.Version.ShouldBe(1);
    }

    /// <summary>
    /// Two recordings, the later heartbeat's first, both waiting on the proplet's liveness row (locked here as a liveness
    /// check locks it), so that both statements are under way at once and the earlier heartbeat's lands last. Before the
    /// liveness table each recording read the document and wrote it back, and the one landing last moved the newest
    /// back; recorded in one statement on the row (PostgreSQL re-reads a row it waited for), the newest is the later one
    /// and the history does not take the earlier one after it.
    /// </summary>
    [Fact]
    public async Task GivenConcurrentRecordings_WhenTheEarlierHeartbeatLandsLast_ThenTheNewestDoesNotMoveBack()
    {
        var id = await RegisterAsync("concurrent");
        var clock = new FixedClock(T0.AddMinutes(1));
        (await new MartenPropletRegistry(_db.Marten, clock).RecordHeartbeatAsync(id, T0.AddSeconds(5), Ct)).ShouldBe(false);
        Task<bool?> later, earlier;
        await using (var holder = await _db.DataSource.OpenConnectionAsync(Ct))
        await using (var transaction = await holder.BeginTransactionAsync(Ct))
        {
            await using (var lockRow = new NpgsqlCommand($"select 1 from {_db.Quoted}.{PropletLiveness.TableName} where id = $1 for update", holder, transaction))
            {
                lockRow.Parameters.AddWithValue(KeyOf(id));
                (await lockRow.ExecuteScalarAsync(Ct)).ShouldBe(1, "the first heartbeat made the row");
            }

            later = new MartenPropletRegistry(_db.Marten, clock).RecordHeartbeatAsync(id, T0.AddSeconds(20), Ct);
            await UntilDoneOrWaitingAsync(later, 1);
            earlier = new MartenPropletRegistry(_db.Marten, clock).RecordHeartbeatAsync(id, T0.AddSeconds(10), Ct);
            await UntilDoneOrWaitingAsync(earlier, 2);
            (later.IsCompleted, earlier.IsCompleted).ShouldBe((false, false), "both wait for the row");
            await transaction.CommitAsync(Ct);
        }

        await Task.WhenAll(later, earlier);
        var view = (await new MartenPropletRegistry(_db.Marten, clock).GetAsync(id, Ct))!;
        view.LastAliveAt.ShouldBe(T0.AddSeconds(20));
        view.AliveHistory.ShouldBe([T0.AddSeconds(5), T0.AddSeconds(20)]);
    }

    /// <summary>
    /// A liveness check locked the liveness row and marks the proplet offline: a heartbeat recorded meanwhile waits for
    /// its commit and then reports the proplet offline, so that its node marks it online again.
    /// </summary>
    [Fact]
    public async Task GivenALivenessCheckHoldingTheRow_WhenAHeartbeatIsRecorded_ThenItWaitsAndReadsTheProplet_Offline()
    {
        var id = await RegisterAsync("checked");
        var registry = new MartenPropletRegistry(_db.Marten, new FixedClock(T0.AddMinutes(1)));
        (await registry.RecordHeartbeatAsync(id, T0.AddSeconds(1), Ct)).ShouldBe(false);

        Task<bool?> heartbeat;
        await using (var check = _db.Marten.LightweightSession())
        {
            (await PropletLiveness.LockLastAliveAsync(check, KeyOf(id), Ct)).ShouldBe(T0.AddSeconds(1));
            var stream = await check.Events.FetchForWriting<PropletDocument>(KeyOf(id), Ct);
            stream.AppendOne(new PropletWentOffline(id, "no heartbeat", T0.AddSeconds(40)));
            heartbeat = registry.RecordHeartbeatAsync(id, T0.AddSeconds(41), Ct);
            await UntilDoneOrWaitingAsync(heartbeat, 1);
            heartbeat.IsCompleted.ShouldBeFalse("the heartbeat waits for the check's lock");
            await check.SaveChangesAsync(Ct);
        }

        (await heartbeat).ShouldBe(true);
        (await registry.GetAsync(id, Ct))!.LastAliveAt.ShouldBe(T0.AddSeconds(41));
    }

    /// <summary>Until <paramref name="recording"/> is done or <paramref name="waiting"/> statements of this schema wait for a lock.</summary>
    private async Task UntilDoneOrWaitingAsync(Task recording, int waiting)
    {
        while (!recording.IsCompleted)
        {
            await using var count = _db.DataSource.CreateCommand(
                "select count(*) from pg_stat_activity where wait_event_type = 'Lock' and pid <> pg_backend_pid() and position($1 in query) > 0");
            count.Parameters.AddWithValue(_db.Schema);
            if ((long)(await count.ExecuteScalarAsync(Ct))! >= waiting)
            {
                return;
            }

            await Task.Yield();
        }
    }

    /// <summary>A node's clock, fixed at <paramref name="now"/>.</summary>
    private sealed class FixedClock(DateTimeOffset now) : TimeProvider
    {
        public override DateTimeOffset GetUtcNow() => now;
    }
}
