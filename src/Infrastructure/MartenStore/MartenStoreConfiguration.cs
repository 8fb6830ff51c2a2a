using JasperFx;
using JasperFx.Events;
using JasperFx.Events.Projections;
using Marten;
using Npgsql;
using Propeller.Application.EventStore;
using Propeller.Application.Tasks;
using Propeller.Domain.Tasks;
using Propeller.Infrastructure.Serialization;
using Marten.Schema;
using Weasel.Core;
using Weasel.Postgresql.Tables;
using TaskStatus = Propeller.Domain.Tasks.TaskStatus;

namespace Propeller.Infrastructure.MartenStore;

/// <summary>
/// How Propeller configures Marten (ADR 0010), in one place for the manager, the tests and the benchmarks: Guid
/// streams, the event aliases of <see cref="EventTypeRegistry"/> (a new event is one line there), every metadata
/// column on, the stored JSON shape of <see cref="JsonDefaults"/>, the inline state projections, and our own
/// tables (<see cref="MessageTables"/>) and snapshots in the same schema, applied with Marten's.
/// </summary>
public static class MartenStoreConfiguration
{
    /// <summary>
    /// The append mode chosen by measurement (docs/performance.md, eventstore): Quick is one function call per
    /// stream (no sequence and stream reads before the transaction as in Rich), and the server-timestamp variant
    /// keeps the timestamp the command was decided at (the one `?at=` time travel filters on).
    /// </summary>
    public const EventAppendMode DefaultAppendMode = EventAppendMode.QuickWithServerTimestamps;

    /// <param name="options">Marten's options to fill.</param>
    /// <param name="dataSource">Shared with the rest of the host (one pool).</param>
    /// <param name="schema">Marten's tables go into the event store's schema.</param>
    /// <param name="registry">The event aliases.</param>
    /// <param name="appendMode">Quick by default; the benchmark compares Rich.</param>
    /// <param name="stateProjections">
    /// Whether the projections are registered (off only in benchmarks of bare appends): inline TaskState (the task
    /// view, with its duplicated columns and GIN-indexed metadata), inline proplet view, async task activity.
    /// </param>
    public static void Configure(
        StoreOptions options, NpgsqlDataSource dataSource, string schema, EventTypeRegistry registry, EventAppendMode appendMode = DefaultAppendMode, bool stateProjections = true)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(registry);
        options.Connection(dataSource);
        options.DatabaseSchemaName = schema;

        // The schema is applied at startup (MartenSchemaHostedService), never from a request (libraries.md: a first
        // run on an empty database took 10 s when Marten created its tables on first use).
        options.AutoCreateSchemaObjects = AutoCreate.CreateOrUpdate;
        // Snake case, so Marten's LINQ paths name the stored members; our enum converter (snake_case values) replaces
        // the one Marten adds, so documents and events keep the stored shape.
        options.UseSystemTextJsonForSerialization(EnumStorage.AsString, Casing.SnakeCase, json =>
        {
            foreach (var converter in json.Converters.OfType<System.Text.Json.Serialization.JsonStringEnumConverter>().ToList())
            {
                json.Converters.Remove(converter);
            }

            JsonDefaults.Apply(json);
        });

        options.Events.StreamIdentity = StreamIdentity.AsGuid;
        // No DCB tags: Marten would register the strong-typed ids of the aggregate projections (TaskId) as a tag type,
        // and every task event would then cost a row in mt_event_tag_task_id, with its foreign key and indexes, inside
        // mt_quick_append_events. Nothing here queries events by tag (a task's events are its stream).
        options.Events.AutoDiscoverTagTypes = false;
        options.Events.AppendMode = appendMode;
        // Each flag by name: EnableAll() left the user_name column out (tested by the metadata round trip).
        options.Events.MetadataConfig.CorrelationIdEnabled = true;
        options.Events.MetadataConfig.CausationIdEnabled = true;
        options.Events.MetadataConfig.UserNameEnabled = true;
        options.Events.MetadataConfig.HeadersEnabled = true;
        foreach (var (alias, type) in registry.Entries)
        {
            options.Events.MapEventType(type, alias);
        }

        // Ours beside Marten's, created and migrated with them: the telemetry samples.
        options.Storage.ExtendedSchemaObjects.AddRange(MessageTables.All(schema));

        if (stateProjections)
        {
            AddProjections(options);
        }
    }

    /// <summary>Events per page of an async projection (and a rebuild): Marten's 500 gave ~25k events/s here, 5,000 ~60k (ADR 0010).</summary>
    public const int AsyncBatchSize = 5000;

    /// <summary>
    /// Columns the task queries test on every row, so that they never read the JSON (a task's document holds its module:
    /// reading any field of it takes the whole document out of TOAST). The deleted flag, which every list and count
    /// tests (GET /tasks over 50,000 tasks with 6 KiB modules: 1.8 s, its total counting every document). The name, which
    /// the list's search matches anywhere (ILIKE '%x%', no btree helps; from the JSON 3.3 s over 90,000 tasks). The sweep's
    /// order (MartenTaskQueries.ListWaitingAsync): the priority and the change time, and an index over the waiting tasks
    /// only in the order's own expressions, so that a page is an index range read (computed from the JSON, every page
    /// sorted every waiting task's document: 2.8 s a page over 100,000 waiting tasks, 0.6 ms this way). No index of
    /// Marten's per column: none is searched alone.
    /// </summary>
    private static void AddQueryColumns(DocumentMapping mapping)
    {
        mapping.DuplicateField([typeof(TaskState).GetProperty(nameof(TaskState.Deleted))!], columnName: MartenTaskQueries.DeletedColumn);
        mapping.DuplicateField(
            [typeof(TaskState).GetProperty(nameof(TaskState.Spec))!, typeof(TaskSpec).GetProperty(nameof(TaskSpec.Name))!], columnName: MartenTaskQueries.NameColumn);
        mapping.DuplicateField(
            [typeof(TaskState).GetProperty(nameof(TaskState.Spec))!, typeof(TaskSpec).GetProperty(nameof(TaskSpec.Priority))!], columnName: MartenTaskQueries.PriorityColumn);
        mapping.DuplicateField([typeof(TaskState).GetProperty(nameof(TaskState.UpdatedAt))!], columnName: MartenTaskQueries.UpdatedAtColumn);
        mapping.DuplicateField([typeof(TaskState).GetProperty(nameof(TaskState.RunGoesOn))!], columnName: MartenTaskQueries.RunGoesOnColumn);
        // Both partial indexes are spelled so that Weasel's reading of PostgreSQL's own text (pg_get_indexdef: it drops
        // parentheses, splits the columns at commas and turns "x::type" into a CAST) compares equal: any other spelling
        // made every start drop and rebuild the index (MartenSchemaTests). The queries meant to use them spell their
        // predicates as literals (a generic plan cannot prove a parameter matches).
        // The tasks whose run goes on, by proplet (running, or completed and serving: TaskState.RunGoesOn), for the fleet's
        // counts (MartenPropletRegistry) and a proplet's runs: an index-only read instead of their rows (11 ms at 5,000
        // running tasks, 1.4 ms this way). The status too: a document written before the column's property existed
        // has none.
        mapping.Indexes.Add(new IndexDefinition(MartenPropletRegistry.RunningIndex)
        {
            Columns = ["proplet__id"],
            Predicate = $"((status)::text = '{nameof(TaskStatus.Running)}'::text OR {MartenTaskQueries.RunGoesOnColumn}) AND NOT {MartenTaskQueries.DeletedColumn}",
        });
        mapping.Indexes.Add(new IndexDefinition(MartenTaskQueries.WaitingIndex)
        {
            Columns =
            [
                $"((- COALESCE({MartenTaskQueries.PriorityColumn}, {TaskSpec.DefaultPriority})))",
                $"COALESCE({MartenTaskQueries.UpdatedAtColumn}, CAST('-infinity' as timestamp with time zone))",
                "id",
            ],
            Predicate = $"(status)::text = '{nameof(TaskStatus.Scheduled)}'::text",
        });
    }

    private static void AddProjections(StoreOptions options)
    {
        // The task view is the inline TaskState document itself: the list's filters and orders read duplicated
        // columns (written by Marten's upsert from the document), and the metadata filter a jsonb copy of the metadata
        // text with a GIN jsonb_path_ops index, used by containment (@>) only (libraries.md). The deleted flag, the
        // name and the sweep's order have their own columns and partial index (AddQueryColumns).
        // Before the task view, so that rebuilding all projections writes the modules before the views that refer to them.
        options.Projections.Add(new TaskModuleProjection(), ProjectionLifecycle.Inline);
        options.Projections.Add(new TaskStateProjection(), ProjectionLifecycle.Inline);
        options.Schema.For<TaskState>()
            .Duplicate(x => x.Status)
            .Duplicate(x => x.PropletId!)
            .Duplicate(x => x.CreatedAt!)
            .Duplicate(x => x.Spec!.Metadata!, pgType: "jsonb", dbType: NpgsqlTypes.NpgsqlDbType.Jsonb, configure: index =>
            {
                index.Method = Weasel.Postgresql.Tables.IndexMethod.gin;
                index.Mask = "? jsonb_path_ops";
            });

        options.Policies.ForAllDocuments(mapping =>
        {
            if (mapping.DocumentType == typeof(TaskState))
            {
                AddQueryColumns(mapping);
            }
        });

        options.Projections.Add(new PropletDocumentProjection(), ProjectionLifecycle.Inline);

        // What a dashboard may read late runs in Marten's async daemon (AddAsyncDaemon where the host runs it).
        options.Projections.Add(new TaskActivityProjection(), ProjectionLifecycle.Async, o =>
        {
            o.BatchSize = AsyncBatchSize;
            o.MaximumHopperSize = AsyncBatchSize * 4;
        });
    }
}
