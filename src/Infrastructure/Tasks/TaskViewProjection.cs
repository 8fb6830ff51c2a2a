using Propeller.Application.Caching;
using Propeller.Application.EventStore;
using Propeller.Domain.Tasks;
using Propeller.Infrastructure.Projections;
using Propeller.Infrastructure.Serialization;

namespace Propeller.Infrastructure.Tasks;

/// <summary>
/// The task read model: one row per task with its folded state, name, state number and metadata (GIN-indexed for
/// the metadata filter of GET /tasks). Inline: written in the same transaction as the task's events.
/// </summary>
public sealed class TaskViewProjection : IProjection
{
    public const string ProjectionName = "task_view";

    private const int MaxCachedRows = 50_000;

    /// <summary>Rows this node committed, by task: spares the read before the next append to the same task.</summary>
    private readonly VersionedCache<Guid, TaskState> _rows = new(MaxCachedRows);

    public string Name => ProjectionName;

    public bool UsesGlobalPositions => false;

    public IReadOnlyCollection<string>? EventTypes => null;

    public Task EnsureSchemaAsync(ProjectionContext context, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(context);
        context.Add($"""
            create table if not exists {context.Schema}.task_view (
                id         uuid primary key,
                name       text not null,
                state      integer not null,
                proplet_id text,
                metadata   jsonb,
                created_at timestamptz not null,
                version    bigint not null,
                doc        jsonb not null);
            """);
        context.Add($"create index if not exists task_view_metadata on {context.Schema}.task_view using gin (metadata jsonb_path_ops)");
        context.Add($"create index if not exists task_view_created on {context.Schema}.task_view (created_at, id)");
        context.Add($"create index if not exists task_view_running on {context.Schema}.task_view (proplet_id) where state = 2");
        context.Add($"create index if not exists task_view_scheduled on {context.Schema}.task_view (id) where state = 1");
        return Task.CompletedTask;
    }

    public async Task ApplyAsync(ProjectionContext context, IReadOnlyList<StoredEvent> events, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(events);
        var byTask = events.Where(e => e.Data is TaskEvent).GroupBy(e => ((TaskEvent)e.Data).TaskId).ToList();
        if (byTask.Count == 0)
        {
            return;
        }

        // The row before these events: none for a new stream, the cached one when it is exactly one version behind
        // (appends to a stream are serialised, so that row is the current one), else read.
        var known = new Dictionary<Guid, TaskState>();
        var unknown = new List<Guid>();
        foreach (var group in byTask)
        {
            var before = group.First().Version - 1;
            if (before == 0)
            {
                known[group.Key.Value] = TaskDecider.Initial;
            }
            else if (_rows.TryGet(group.Key.Value, out var row, out var rowVersion) && rowVersion == before)
            {
                known[group.Key.Value] = row;
            }
            else
            {
                unknown.Add(group.Key.Value);
            }
        }

        var current = unknown.Count == 0 ? known : await LoadAsync(context, [.. unknown], known, cancellationToken);
        foreach (var group in byTask)
        {
            var state = current.GetValueOrDefault(group.Key.Value) ?? TaskDecider.Initial;
            long version = 0;
            foreach (var e in group)
            {
                state = TaskDecider.Evolve(state, (TaskEvent)e.Data);
                version = e.Version;
            }

            var id = group.Key.Value;
            var written = state;
            var writtenVersion = version;
            context.OnCommitted(() => _rows.Set(id, written, writtenVersion));

            if (state.Deleted || !state.Exists)
            {
                context.Add($"delete from {context.Schema}.task_view where id = $1", group.Key.Value);
                continue;
            }

            context.Add(
                $"""
                insert into {context.Schema}.task_view (id, name, state, proplet_id, metadata, created_at, version, doc)
                values ($1, $2, $3, $4, $5::jsonb, $6, $7, $8::jsonb)
                on conflict (id) do update
                   set name = excluded.name, state = excluded.state, proplet_id = excluded.proplet_id, metadata = excluded.metadata,
                       version = excluded.version, doc = excluded.doc
                """,
                group.Key.Value, state.Spec!.Name, (int)state.Status, Text(state.PropletId), Text(state.Spec.Metadata), state.CreatedAt!.Value, version, EventSerializer.SerializeState(state));
        }
    }

    /// <summary>A text parameter that keeps its type when null, so the statement is prepared once, not re-planned each time.</summary>
    private static Npgsql.NpgsqlParameter Text(string? value) => new() { Value = (object?)value ?? DBNull.Value, NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Text };

    public Task ResetAsync(ProjectionContext context, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(context);
        _rows.Clear();
        context.Add($"truncate {context.Schema}.task_view");
        return Task.CompletedTask;
    }

    private static async Task<Dictionary<Guid, TaskState>> LoadAsync(ProjectionContext context, Guid[] ids, Dictionary<Guid, TaskState> states, CancellationToken cancellationToken)
    {
        await using var command = new Npgsql.NpgsqlCommand($"select id, doc::text from {context.Schema}.task_view where id = any($1)", context.Connection, context.Transaction);
        command.Parameters.AddWithValue(ids);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            states[reader.GetGuid(0)] = EventSerializer.DeserializeState<TaskState>(reader.GetString(1))!;
        }

        return states;
    }
}
