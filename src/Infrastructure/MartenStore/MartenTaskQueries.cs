using Marten;
using Marten.Linq.MatchesSql;
using Propeller.Application.Scheduling;
using Propeller.Application.Tasks;
using Propeller.Domain.Tasks;
using TaskStatus = Propeller.Domain.Tasks.TaskStatus;

namespace Propeller.Infrastructure.MartenStore;

/// <summary>
/// The task view on Marten (ADR 0010 step 2): the inline <see cref="TaskState"/> document, written in the append's
/// transaction (the API reads its own writes), queried through its duplicated columns (status, proplet, creation
/// time) and the GIN-indexed jsonb copy of the metadata (MartenStoreConfiguration). A deleted task keeps its document
/// (the projection folds TaskDeleted like any event) and is left out of every read.
/// </summary>
public sealed class MartenTaskQueries(IDocumentStore store) : ITaskQueries, IWaitingTaskQueries
{
    /// <summary>The duplicated columns (no JSON read in a row's test) and the partial index of the sweep's order (MartenStoreConfiguration).</summary>
    public const string PriorityColumn = "priority";

    public const string UpdatedAtColumn = "updated_at";

    public const string DeletedColumn = "deleted";

    /// <summary>The duplicated column of TaskState.RunGoesOn (running, or completed and serving).</summary>
    public const string RunGoesOnColumn = "run_goes_on";

    public const string NameColumn = "name";

    public const string WaitingIndex = "mt_doc_taskstate_idx_waiting";

    /// <summary>
    /// The sweep's order as one ascending row (priority negated: highest first; then least recently changed, then id),
    /// so that a keyset page is a single row comparison against the last key of the page before, read from the
    /// partial index <see cref="WaitingIndex"/> built on these same expressions. The key compared with is read from
    /// the same columns (<see cref="WaitingKeys"/>), so it equals the stored row exactly.
    /// </summary>
    private static readonly string WaitingOrder =
        $"(-coalesce(d.{PriorityColumn}, {TaskSpec.DefaultPriority})), (coalesce(d.{UpdatedAtColumn}, '-infinity'::timestamptz)), d.id";

    /// <summary>The partial index's predicate, as the queries that should use it must spell it.</summary>
    public static readonly string WaitingPredicate = $"d.status = '{nameof(TaskStatus.Scheduled)}'";

    public async Task<TaskState?> GetAsync(TaskId id, CancellationToken cancellationToken)
    {
        await using var session = store.QuerySession();
        return await session.LoadAsync<TaskState>(id, cancellationToken) is { Deleted: false } state ? state : null;
    }

    public async Task<TaskState?> GetAtVersionAsync(TaskId id, long version, CancellationToken cancellationToken)
    {
        // The inline projection writes the stream's version with the document (Marten's mt_version).
        await using var session = store.QuerySession();
        return await session.Query<TaskState>().Where(x => x.Id == id && x.MatchesSql("d.mt_version = ?", version)).SingleOrDefaultAsync(cancellationToken);
    }

    public async Task<IReadOnlyList<WaitingTaskKey>> ListWaitingAsync(WaitingTaskKey? after, int limit, CancellationToken cancellationToken)
    {
        await using var session = store.QuerySession();
        var rows = await WaitingKeys(Waiting(session.Query<TaskState>(), after)).Take(limit).ToListAsync(cancellationToken);
        return [.. rows.Select(r => new WaitingTaskKey(r.Priority ?? TaskSpec.DefaultPriority, r.UpdatedAt, r.Id))];
    }

    /// <summary>
    /// The sweep's keys from the duplicated columns alone (the sweep's page query; tests read its SQL): reading the
    /// documents took each waiting task's module out of TOAST on every page of every sweep (7.9 s a round over 50,000
    /// waiting tasks, 99 ms for the keys).
    /// </summary>
    public static IQueryable<WaitingRow> WaitingKeys(IQueryable<TaskState> waiting) =>
        waiting.Select(x => new WaitingRow { Id = x.Id, Priority = x.Spec!.Priority, UpdatedAt = x.UpdatedAt });

    /// <summary>The waiting tasks after <paramref name="after"/> in the sweep's order (the sweep's query; tests EXPLAIN it).</summary>
    public static IQueryable<TaskState> Waiting(IQueryable<TaskState> tasks, WaitingTaskKey? after)
    {
        // The status as a literal, not the parameter LINQ makes of it: the manager's statements are prepared with
        // generic plans (plan_cache_mode), and a generic plan cannot use the partial index of the waiting tasks for
        // "status = $1" (it scanned and sorted every task, 63 ms a page over 50,000).
        var query = tasks.Where(x => x.MatchesSql(WaitingPredicate) && !x.Deleted);
        if (after is { } key)
        {
            query = key.UpdatedAt is { } updatedAt
                ? query.Where(x => x.MatchesSql($"({WaitingOrder}) > (?, ?, ?)", -key.Priority, updatedAt.ToUniversalTime(), key.Id.Value))
                : query.Where(x => x.MatchesSql($"({WaitingOrder}) > (?, '-infinity'::timestamptz, ?)", -key.Priority, key.Id.Value));
        }

        return query.OrderBySql(WaitingOrder);
    }

    public async Task<IReadOnlyList<TaskState>> ListRunsOnAsync(string propletId, CancellationToken cancellationToken)
    {
        await using var session = store.QuerySession();
        return await session.Query<TaskState>()
            .Where(x => x.MatchesSql(MartenPropletRegistry.RunningPredicate) && x.PropletId == propletId)
            .OrderBy(x => x.Id)
            .ToListAsync(cancellationToken);
    }

    public async Task<TaskList> ListAsync(long offset, int limit, TaskListFilter filter, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(filter);
        await using var session = store.QuerySession();
        var page = await Filter(session.Query<TaskState>(), filter).Skip((int)Math.Min(offset, int.MaxValue)).Take(limit).ToListAsync(cancellationToken);

        // The total is counted on its own, and only when the page cannot tell it: Marten's statistics (count(*) over ())
        // kept every row the filter lets through, document and all, to count them (29 ms for the first page over 50,000
        // tasks; the page alone 4-6 ms, the count 6 ms).
        var total = offset == 0 && page.Count < limit ? page.Count : await Filter(session.Query<TaskState>(), filter).LongCountAsync(cancellationToken);
        return new TaskList(total, page);
    }

    /// <summary>The tasks <paramref name="filter"/> lets through, in its order (the list's query; tests EXPLAIN it).</summary>
    public static IQueryable<TaskState> Filter(IQueryable<TaskState> tasks, TaskListFilter filter)
    {
        ArgumentNullException.ThrowIfNull(filter);
        var query = tasks.Where(x => !x.Deleted);
        if (filter.Metadata is not null)
        {
            // Containment on the indexed jsonb column (a LINQ dictionary lookup would scan the JSON instead).
            query = query.Where(x => x.MatchesSql($"d.{MetadataColumn} @> ?::jsonb", filter.Metadata));
        }

        if (filter.Status is { } status)
        {
            query = query.Where(x => x.Status == status);
        }

        if (filter.Name is { Length: > 0 } name)
        {
            // A part of the name, case-insensitive; LIKE's wildcards in the input are taken literally.
            var escaped = name.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("%", "\\%", StringComparison.Ordinal).Replace("_", "\\_", StringComparison.Ordinal);
            query = query.Where(x => x.MatchesSql($"d.{NameColumn} ilike '%' || ? || '%'", escaped));
        }

        if (filter.PropletId is { Length: > 0 } proplet)
        {
            query = query.Where(x => x.PropletId == proplet);
        }

        return filter.NewestFirst
            ? query.OrderByDescending(x => x.CreatedAt).ThenByDescending(x => x.Id)
            : query.OrderBy(x => x.CreatedAt).ThenBy(x => x.Id);
    }

    /// <summary>The duplicated jsonb column holding the metadata (Marten names it after the member path).</summary>
    public const string MetadataColumn = "specmetadata";
}

/// <summary>A waiting task's key as PostgreSQL reads it from the duplicated columns (no priority without a spec).</summary>
public sealed class WaitingRow
{
    public TaskId Id { get; set; }

    public int? Priority { get; set; }

    public DateTimeOffset? UpdatedAt { get; set; }
}
