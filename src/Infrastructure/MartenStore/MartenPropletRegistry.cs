using Marten;
using Marten.Linq.MatchesSql;
using Marten.Patching;
using Propeller.Application.Proplets;
using Propeller.Domain.Proplets;
using Propeller.Domain.Tasks;
using TaskStatus = Propeller.Domain.Tasks.TaskStatus;

namespace Propeller.Infrastructure.MartenStore;

/// <summary>
/// The proplet view on Marten (ADR 0010 step 2): <see cref="PropletDocument"/>s written inline by
/// <see cref="PropletDocumentProjection"/>, heartbeats patched into them (no event each), running-task counts read
/// from the task view (counted by PostgreSQL on its duplicated columns).
/// </summary>
public sealed class MartenPropletRegistry(IDocumentStore store, TimeProvider time) : IPropletRegistry
{
    public const int AliveHistoryLength = 10;

    public async Task<PropletView?> GetAsync(PropletId id, CancellationToken cancellationToken)
    {
        await using var session = store.QuerySession();
        var batch = session.CreateBatchQuery();
        var document = batch.Load<PropletDocument>(IdOf(id));
        var running = batch.Query<TaskState>().Where(x => x.MatchesSql(RunningPredicate) && x.PropletId == id.Value).Count();
        await batch.Execute(cancellationToken);
        return await document is { State.Deleted: false } found ? View(found, (int)await running) : null;
    }

    public async Task<IReadOnlyList<PropletView>> ListAsync(CancellationToken cancellationToken) => (await ListFleetAsync(cancellationToken)).Proplets;

    public async Task<PropletFleet> ListFleetAsync(CancellationToken cancellationToken)
    {
        await using var session = store.QuerySession();
        // Deleted proplets' documents stay (their streams are the record): left in PostgreSQL, not read and dropped here.
        var registered = await session.Query<PropletDocument>().Where(d => !d.State.Deleted).ToListAsync(cancellationToken);
        // Counted by PostgreSQL on the duplicated columns: one row per proplet, no document read (reading the deleted
        // flag from the JSON took every running task's whole document, module included, out of TOAST on every fleet
        // read). A batched query has no GroupBy: two round trips.
        var running = await RunningCounts(session.Query<TaskState>()).ToListAsync(cancellationToken);
        // A broadcast task runs on no proplet in particular: not counted, and not "on a proplet that is gone".
        var counts = running.Where(c => c.PropletId is not null && c.PropletId != TaskSpec.BroadcastTarget)
            .ToDictionary(c => c.PropletId!, c => c.Count, StringComparer.Ordinal);
        var known = registered.Select(d => d.State.Id.Value).ToHashSet(StringComparer.Ordinal);
        return new PropletFleet(
            [.. registered.Select(d => View(d, counts.GetValueOrDefault(d.State.Id.Value)))
                .OrderBy(v => v.Name, StringComparer.Ordinal).ThenBy(v => v.Id.Value, StringComparer.Ordinal)],
            [.. counts.Keys.Where(p => !known.Contains(p)).Select(p => new PropletId(p))]);
    }

    /// <summary>The partial index of the tasks whose run goes on, by proplet (MartenStoreConfiguration).</summary>
    public const string RunningIndex = "mt_doc_taskstate_idx_running";

    /// <summary>
    /// The tasks whose run goes on on a proplet (running, or completed and serving: a daemon, a served HTTP proxy),
    /// spelled as the partial index's predicate: literals, not the parameter LINQ makes of the status (a generic plan,
    /// as the manager's statements have, cannot use a partial index for "status = $1"), and NOT deleted (LINQ's
    /// "deleted is null or not deleted" does not imply it).
    /// </summary>
    public static readonly string RunningPredicate =
        $"(d.status = '{nameof(TaskStatus.Running)}' or d.{MartenTaskQueries.RunGoesOnColumn}) and not d.{MartenTaskQueries.DeletedColumn}";

    /// <summary>How many tasks run on each proplet, serving ones included (the fleet's query; tests read its SQL and plan).</summary>
    public static IQueryable<RunningCount> RunningCounts(IQueryable<TaskState> tasks) =>
        tasks.Where(x => x.MatchesSql(RunningPredicate)).GroupBy(x => x.PropletId).Select(g => new RunningCount(g.Key, g.Count()));

    /// <summary>
    /// Reads the document and patches its liveness (newest heartbeat, never one later than this node's clock; the last
    /// ten): two round trips, no event. A proplet event committed between the two may overwrite this heartbeat (its
    /// inline projection writes the whole document); the next heartbeat restores it (ADR 0010).
    /// </summary>
    public async Task<bool?> RecordHeartbeatAsync(PropletId id, DateTimeOffset at, CancellationToken cancellationToken)
    {
        var key = IdOf(id);
        await using var session = store.LightweightSession();
        if (await session.LoadAsync<PropletDocument>(key, cancellationToken) is not { State.Deleted: false } document)
        {
            return null;
        }

        // A late heartbeat does not move the newest back, but the newest is taken as no later than this node's clock: one
        // recorded by a node whose clock runs ahead (or before an NTP step back) would hold the proplet alive (now - last
        // negative) for as long as that lead, so a proplet that dies meanwhile is found out that late. Clamped, not
        // dropped: a node whose clock lags does not pull it back by more than its lag.
        var now = time.GetUtcNow();
        var last = document.LastAliveAt is { } previous ? Max(Min(previous, now), at) : at;
        var history = document.AliveHistory.Append(at).TakeLast(AliveHistoryLength).ToList();
        session.Patch<PropletDocument>(key)
            .Set(x => x.LastAliveAt, last)
            .Set(x => x.AliveHistory, history);
        await session.SaveChangesAsync(cancellationToken);
        return document.State.Offline;
    }

    private static DateTimeOffset Max(DateTimeOffset a, DateTimeOffset b) => a > b ? a : b;

    private static DateTimeOffset Min(DateTimeOffset a, DateTimeOffset b) => a < b ? a : b;

    private static Guid IdOf(PropletId id) => MartenStreamIds.ToGuid(PropletAggregate.StreamId(id));

    private static PropletView View(PropletDocument document, int runningTasks) => new(
        document.State.Id, document.State.Name ?? "", document.State.Metadata, document.State.Offline, document.LastAliveAt, document.AliveHistory, runningTasks, document.State.OfflineSince);
}

/// <summary>How many tasks run on one proplet (a row of the fleet's GROUP BY).</summary>
public sealed record RunningCount(string? PropletId, int Count);
