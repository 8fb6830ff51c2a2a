using Weasel.Postgresql;
using Weasel.Postgresql.Tables;

namespace Propeller.Infrastructure.MartenStore;

/// <summary>
/// The tables beside Marten's that the manager writes: the proplets' telemetry samples (spec propeller-manager.md §6.6;
/// not domain events) and the manager nodes' broker sessions (<c>mqtt_sessions</c>, Mqtt.SessionRecovery), the proplets' liveness (<see cref="PropletLiveness"/>). The outbox and inbox are Wolverine's since issue 15 (ADR 0014); an existing database keeps the
/// old outbox and inbox tables of our retired relay until they are dropped (docs/operations.md). They are Weasel tables in Marten's schema
/// (<c>StoreOptions.Storage.ExtendedSchemaObjects</c>), so Marten creates and migrates them with its own at startup.
/// </summary>
internal static class MessageTables
{
    public static IEnumerable<Table> All(string schema) => [TaskMetrics(schema), PropletMetrics(schema), MqttSessions(schema), PropletLiveness.Table(schema)];

    /// <summary>One row per manager node's broker session (its MQTT client id): when the node was last seen alive, and
    /// which node is recovering the session once it was not seen for the stale timeout.</summary>
    private static Table MqttSessions(string schema)
    {
        var table = new Table(new PostgresqlObjectName(schema, "mqtt_sessions", SchemaUtils.IdentifierUsage.General));
        table.AddColumn<string>("client_id").AsPrimaryKey();
        table.AddColumn("seen", "timestamptz").NotNull();
        table.AddColumn<string>("claimed_by");
        table.AddColumn("claimed_at", "timestamptz");
        return table;
    }

    private static Table TaskMetrics(string schema)
    {
        var table = new Table(new PostgresqlObjectName(schema, "task_metrics", SchemaUtils.IdentifierUsage.General));
        table.AddColumn<long>("id").AsPrimaryKey().BigAutoIncrement();
        table.AddColumn<Guid>("task_id").NotNull();
        table.AddColumn<string>("proplet_id").NotNull();
        table.AddColumn("sampled_at", "timestamptz").NotNull();
        table.AddColumn("metrics", "jsonb").NotNull();
        table.AddColumn("aggregated", "jsonb");
        table.AddColumn("received_at", "timestamptz").NotNull().DefaultValueByExpression("now()");
        // Read newest first per task: PostgreSQL scans the ascending index backwards.
        table.Indexes.Add(new IndexDefinition("task_metrics_task") { Columns = ["task_id", "sampled_at", "id"] });
        KeepAllVisible(table);
        return table;
    }

    private static Table PropletMetrics(string schema)
    {
        var table = new Table(new PostgresqlObjectName(schema, "proplet_metrics", SchemaUtils.IdentifierUsage.General));
        table.AddColumn<long>("id").AsPrimaryKey().BigAutoIncrement();
        table.AddColumn<string>("proplet_id").NotNull();
        table.AddColumn<string>("namespace");
        table.AddColumn("sampled_at", "timestamptz").NotNull();
        table.AddColumn("cpu", "jsonb").NotNull();
        table.AddColumn("memory", "jsonb").NotNull();
        table.AddColumn("received_at", "timestamptz").NotNull().DefaultValueByExpression("now()");
        table.Indexes.Add(new IndexDefinition("proplet_metrics_proplet") { Columns = ["proplet_id", "sampled_at", "id"] });
        KeepAllVisible(table);
        return table;
    }

    /// <summary>
    /// The metrics reads count a key's samples (their <c>total</c>) from its index alone, which PostgreSQL does only for
    /// heap pages the visibility map marks all-visible; else it visits one heap page per sample (1.0–2.7 s for a proplet's
    /// 7 days, against 29–67 ms index-only). These tables are only inserted into (and pruned at the old end), so autovacuum
    /// visits them for inserts (PostgreSQL 13+): by default after 20% of the table, 12,000,000 rows at 1,000 proplets,
    /// about a day and a half of samples left unmarked. At 1% it runs about every 100 minutes there; such a vacuum skips
    /// the pages already all-visible, so it costs little.
    /// </summary>
    private static void KeepAllVisible(Table table) =>
        table.WithStorageParameter(StorageParameterNames.AutovacuumVacuumInsertScaleFactor, 0.01);
}
