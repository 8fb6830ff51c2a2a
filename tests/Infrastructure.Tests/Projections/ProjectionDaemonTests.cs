using Propeller.Application.EventStore;
using Propeller.Infrastructure.Projections;
using Propeller.Infrastructure.Tests.Support;
using static Propeller.Infrastructure.Tests.Support.TestEvents;

namespace Propeller.Infrastructure.Tests.Projections;

public sealed class ProjectionDaemonTests : IAsyncLifetime
{
    private readonly RecordingProjection _projection = new("recorder");
    private TestDatabase _db = null!;

    public async ValueTask InitializeAsync() =>
        _db = await TestDatabase.CreateAsync("es_daemon", c => c.Add(_projection, ProjectionLifecycle.Async));

    public ValueTask DisposeAsync() => _db.DisposeAsync();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private async Task WriteAsync(int writers, int eventsPerWriter, int seed)
    {
        await Task.WhenAll(Enumerable.Range(0, writers).Select(w => Task.Run(async () =>
        {
            var random = new Random(seed + w);
            var written = 0;
            while (written < eventsPerWriter)
            {
                var batch = Math.Min(random.Next(1, 6), eventsPerWriter - written);
                var events = Enumerable.Range(written, batch).Select(i => (object)Numbered(NewId(), i)).ToList();
                await _db.Store.AppendAsync($"task-{seed}-{w}", "task", ExpectedVersion.Any, events, Meta(), Ct);
                written += batch;
            }
        }, Ct)));
    }

    private async Task<List<(Guid EventId, string Stream, long Version, ulong Tx, long Seq)>> SeenAsync()
    {
        var rows = new List<(Guid, string, long, ulong, long)>();
        await using var command = _db.DataSource.CreateCommand($"select event_id, stream_id, version, tx, seq from {_db.Quoted}.seen_recorder order by n");
        await using var reader = await command.ExecuteReaderAsync(Ct);
        while (await reader.ReadAsync(Ct))
        {
            rows.Add((reader.GetGuid(0), reader.GetString(1), reader.GetInt64(2), ulong.Parse(reader.GetString(3), System.Globalization.CultureInfo.InvariantCulture), reader.GetInt64(4)));
        }

        return rows;
    }

    private static async Task<ProjectionStatus> WaitForPauseAsync(ProjectionDaemon daemon)
    {
        while (true)
        {
            if (await daemon.GetStatusAsync("recorder", Ct) is { IsPaused: true } status)
            {
                return status;
            }

            await Task.Delay(10, Ct);
        }
    }

    private async Task AssertEveryEventSeenOnceInOrderAsync(int expected)
    {
        var seen = await SeenAsync();
        seen.Count.ShouldBe(expected);
        seen.Select(s => s.EventId).Distinct().Count().ShouldBe(expected);
        var stored = await _db.ScalarAsync<long>("select count(*) from {schema}.events");
        stored.ShouldBe(expected);

        // Applied in the global commit-safe order, which within every stream is version order.
        seen.ShouldBe(seen.OrderBy(s => s.Tx).ThenBy(s => s.Seq).ToList());
        foreach (var stream in seen.GroupBy(s => s.Stream))
        {
            stream.Select(s => s.Version).ShouldBe(Enumerable.Range(1, stream.Count()).Select(v => (long)v));
        }
    }

    [Fact]
    public async Task EightWritersOnSeparateStreams_AsyncProjectionSeesEveryEventExactlyOnceInCommitOrder()
    {
        var daemon = _db.Daemon(o => o.BatchSize = 100);
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var running = daemon.RunAsync(stop.Token);

        await WriteAsync(writers: 8, eventsPerWriter: 250, seed: 1);

        (await daemon.WaitForCatchUpAsync("recorder", TimeSpan.FromSeconds(60), Ct)).ShouldBeTrue();
        await stop.CancelAsync();
        await running;
        await AssertEveryEventSeenOnceInOrderAsync(2000);
        var status = await daemon.GetStatusAsync("recorder", Ct);
        status!.EventsApplied.ShouldBe(2000);
        status.LeaseOwner.ShouldBeNull();
    }

    [Fact]
    public async Task DaemonRestartedMidway_ResumesFromItsCheckpoint()
    {
        await WriteAsync(writers: 4, eventsPerWriter: 300, seed: 2);
        var first = _db.Daemon(o => o.BatchSize = 50);
        using (var stop = CancellationTokenSource.CreateLinkedTokenSource(Ct))
        {
            var running = first.RunAsync(stop.Token);
            while ((await first.GetStatusAsync("recorder", Ct))?.EventsApplied is null or < 300)
            {
                await Task.Delay(5, Ct);
            }

            await stop.CancelAsync();
            await running;
        }

        var stoppedAt = (await first.GetStatusAsync("recorder", Ct))!.EventsApplied;
        stoppedAt.ShouldBeLessThan(1200);
        (await SeenAsync()).Count.ShouldBe((int)stoppedAt);

        var second = _db.Daemon(o => o.BatchSize = 50);
        using var stop2 = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var resumed = second.RunAsync(stop2.Token);
        (await second.WaitForCatchUpAsync("recorder", TimeSpan.FromSeconds(60), Ct)).ShouldBeTrue();
        await stop2.CancelAsync();
        await resumed;

        await AssertEveryEventSeenOnceInOrderAsync(1200);
    }

    [Fact]
    public async Task TwoNodes_OneLeaseHolderAppliesEachEventOnce()
    {
        var a = _db.Daemon(o => o.BatchSize = 20);
        var b = _db.Daemon(o => o.BatchSize = 20);
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var runningA = a.RunAsync(stop.Token);
        var runningB = b.RunAsync(stop.Token);

        await WriteAsync(writers: 4, eventsPerWriter: 100, seed: 3);

        (await a.WaitForCatchUpAsync("recorder", TimeSpan.FromSeconds(60), Ct)).ShouldBeTrue();
        var owner = (await a.GetStatusAsync("recorder", Ct))!.LeaseOwner;
        owner.ShouldBeOneOf(a.NodeId, b.NodeId);
        await stop.CancelAsync();
        await Task.WhenAll(runningA, runningB);
        await AssertEveryEventSeenOnceInOrderAsync(400);
    }

    [Fact]
    public async Task FailingEvent_IsRetriedThenPausesWithTheFailingEvent_NeverSkipped_AndResumes()
    {
        await WriteAsync(writers: 1, eventsPerWriter: 30, seed: 4);
        await _db.Store.AppendAsync("task-poison", "task", ExpectedVersion.Any, [Numbered(NewId(), 0)], Meta(), Ct);
        await WriteAsync(writers: 1, eventsPerWriter: 30, seed: 5);
        _projection.Poison = e => e.StreamId == "task-poison";
        var daemon = _db.Daemon(o => o.BatchSize = 1000);
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var running = daemon.RunAsync(stop.Token);

        var status = await WaitForPauseAsync(daemon);

        status.FailedStreamId.ShouldBe("task-poison");
        status.FailedVersion.ShouldBe(1);
        status.Error!.ShouldContain("poisoned");
        status.EventsApplied.ShouldBe(30);
        (await SeenAsync()).ShouldNotContain(s => s.Stream == "task-poison");
        await Should.ThrowAsync<InvalidOperationException>(() => daemon.WaitForCatchUpAsync("recorder", TimeSpan.FromSeconds(5), Ct));

        _projection.Poison = null;
        await daemon.ResumeAsync("recorder", Ct);
        (await daemon.WaitForCatchUpAsync("recorder", TimeSpan.FromSeconds(60), Ct)).ShouldBeTrue();
        await stop.CancelAsync();
        await running;
        await AssertEveryEventSeenOnceInOrderAsync(61);
    }

    [Fact]
    public async Task UnknownEventAlias_PausesTheProjectionNamingTheEvent()
    {
        await WriteAsync(writers: 1, eventsPerWriter: 5, seed: 6);
        await _db.ExecuteAsync("update {schema}.events set type = 'gone.v1' where version = 3");
        var daemon = _db.Daemon();
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var running = daemon.RunAsync(stop.Token);

        var status = await WaitForPauseAsync(daemon);

        await stop.CancelAsync();
        await running;
        status.Error!.ShouldContain("gone.v1");
        status.FailedStreamId.ShouldBe("task-6-0");
        status.FailedVersion.ShouldBe(3);
        status.EventsApplied.ShouldBe(0);
    }

    [Fact]
    public async Task Rebuild_ResetsAndReplaysFromZero()
    {
        await WriteAsync(writers: 2, eventsPerWriter: 100, seed: 7);
        var daemon = _db.Daemon(o => o.BatchSize = 64);
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var running = daemon.RunAsync(stop.Token);
        (await daemon.WaitForCatchUpAsync("recorder", TimeSpan.FromSeconds(60), Ct)).ShouldBeTrue();
        await _db.ExecuteAsync($"insert into {{schema}}.seen_recorder (event_id, stream_id, version, tx, seq) values (gen_random_uuid(), 'junk', 99, '0', 0)");

        await daemon.RequestRebuildAsync("recorder", Ct);
        (await daemon.WaitForCatchUpAsync("recorder", TimeSpan.FromSeconds(60), Ct)).ShouldBeTrue();
        await stop.CancelAsync();
        await running;

        await AssertEveryEventSeenOnceInOrderAsync(200);
        (await daemon.GetStatusAsync("recorder", Ct))!.Rebuilds.ShouldBe(1);
    }
}
