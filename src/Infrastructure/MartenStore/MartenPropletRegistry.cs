using Marten;
using Marten.Linq.MatchesSql;
using Npgsql;
using Propeller.Application.Proplets;
using Propeller.Domain.Proplets;
using Propeller.Domain.Tasks;
using TaskStatus = Propeller.Domain.Tasks.TaskStatus;

namespace Propeller.Infrastructure.MartenStore;

/// <summary>
/// The proplet view on Marten (ADR 0010 step 2): <see cref="PropletDocument"/>s written inline by
/// <see cref="PropletDocumentProjection"/>, with liveness from a table no projection writes (<see cref="PropletLiveness"/>:
/// heartbeats recorded there, no event each), running-task counts read
/// from the task view (counted by PostgreSQL on its duplicated columns).
/// </summary>
public sealed class MartenPropletRegistry(IDocumentStore store, TimeProvider time) : IPropletRegistry
{
    public const int AliveHistoryLength = PropletLiveness.HistoryLength;

    public async Task<PropletView?> GetAsync(PropletId id, CancellationToken cancellationToken)
    {
        await using var session = store.QuerySession();
        var batch = session.CreateBatchQuery();
        var document = batch.Load<PropletDocument>(IdOf(id));
        var liveness = PropletLiveness.QueryAsync(batch, IdOf(id));
        var running = batch.Query<TaskState>().Where(x => x.MatchesSql(RunningPredicate) && x.PropletId == id.Value).Count();
        await batch.Execute(cancellationToken);
        return await document is { State.Deleted: false } found ? View(found, await PropletLiveness.ReadAsync(liveness), (int)await running) : null;
    }

    public async Task<IReadOnlyList<PropletView>> ListAsync(CancellationToken cancellationToken) => (await ListFleetAsync(cancellationToken)).Proplets;

    public async Task<PropletFleet> ListFleetAsync(CancellationToken cancellationToken)
    {
        await using var session = store.QuerySession();
        // Deleted proplets' documents stay (their streams are the record): left in PostgreSQL, not read and dropped here.
        // Their liveness in the same round trip (a table of its own: PropletLiveness).
        var batch = session.CreateBatchQuery();
        var documents = batch.Query<PropletDocument>().Where(d => !d.State.Deleted).ToList();
        var livenessRows = PropletLiveness.QueryAllAsync(batch);
        await batch.Execute(cancellationToken);
        var registered = await documents;
        var liveness = await PropletLiveness.ByIdAsync(livenessRows);
        // Counted by PostgreSQL on the duplicated columns: one row per proplet, no document read (reading the deleted
        // flag from the JSON took every running task's whole document, module included, out of TOAST on every fleet
        // read). A batched query has no GroupBy: two round trips.
        var running = await RunningCounts(session.Query<TaskState>()).ToListAsync(cancellationToken);
        // A broadcast task runs on no proplet in particular: not counted, and not "on a proplet that is gone".
        var counts = running.Where(c => c.PropletId is not null && c.PropletId != TaskSpec.BroadcastTarget)
            .ToDictionary(c => c.PropletId!, c => c.Count, StringComparer.Ordinal);
        var known = registered.Select(d => d.State.Id.Value).ToHashSet(StringComparer.Ordinal);
        return new PropletFleet(
            [.. registered.Select(d => View(d, liveness.GetValueOrDefault(d.Id), counts.GetValueOrDefault(d.State.Id.Value)))
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
    /// Records a heartbeat in one round trip, no event, no read-modify-write (<see cref="PropletLiveness.RecordHeartbeatSql"/>):
    /// every node records each heartbeat, and two nodes' read-modify-writes each appended their own time (or one
    /// overwrote the other, and the newest could move back).
    /// </summary>
    public async Task<bool?> RecordHeartbeatAsync(PropletId id, DateTimeOffset at, CancellationToken cancellationToken)
    {
        var key = IdOf(id);
        var sql = PropletLiveness.RecordHeartbeatSql(store.Options.DatabaseSchemaName);
        await using var connection = store.Storage.Database.CreateConnection();
        await connection.OpenAsync(cancellationToken);
        await using var batch = new NpgsqlBatch(connection);
        var record = new NpgsqlBatchCommand(sql[0]);
        record.Parameters.AddWithValue(key);
        record.Parameters.AddWithValue(at.ToUniversalTime());
        record.Parameters.AddWithValue(time.GetUtcNow().ToUniversalTime());
        record.Parameters.AddWithValue(PropletLiveness.HistoryMargin);
        batch.BatchCommands.Add(record);
        var offline = new NpgsqlBatchCommand(sql[1]);
        offline.Parameters.AddWithValue(key);
        batch.BatchCommands.Add(offline);
        return await batch.ExecuteScalarAsync(cancellationToken) is bool found ? found : null;
    }

    private static Guid IdOf(PropletId id) => MartenStreamIds.ToGuid(PropletAggregate.StreamId(id));

    private static PropletView View(PropletDocument document, PropletLiveness? liveness, int runningTasks) => new(
        document.State.Id, document.State.Name ?? "", document.State.Metadata, document.State.Offline, liveness?.LastAliveAt, liveness?.AliveHistory ?? [], runningTasks,
        document.State.OfflineSince);
}

/// <summary>How many tasks run on one proplet (a row of the fleet's GROUP BY).</summary>
public sealed record RunningCount(string? PropletId, int Count);
