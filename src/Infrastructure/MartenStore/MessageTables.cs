using Weasel.Postgresql;
using Weasel.Postgresql.Tables;

namespace Propeller.Infrastructure.MartenStore;

/// <summary>
/// The tables beside Marten's that the manager writes in an append's transaction or beside it: the outbox (messages
/// sent after commit by the relay, ARCHITECTURE.md §4), the inbox (received messages, handled once) and the proplets'
/// telemetry samples (spec propeller-manager.md §6.6; not domain events). They are Weasel tables in Marten's schema
/// (<c>StoreOptions.Storage.ExtendedSchemaObjects</c>), so Marten creates and migrates them with its own at startup.
/// </summary>
internal static class MessageTables
{
    public static IEnumerable<Table> All(string schema) => [Outbox(schema), Inbox(schema), TaskMetrics(schema), PropletMetrics(schema)];

    private static Table Outbox(string schema)
    {
        var table = new Table(new PostgresqlObjectName(schema, "outbox", SchemaUtils.IdentifierUsage.General));
        table.AddColumn<long>("id").AsPrimaryKey().BigAutoIncrement();
        table.AddColumn<string>("destination").NotNull();
        table.AddColumn("payload", "bytea").NotNull();
        table.AddColumn("headers", "jsonb");
        table.AddColumn("created_at", "timestamptz").NotNull().DefaultValueByExpression("now()");
        table.AddColumn<int>("attempts").NotNull().DefaultValue(0);
        table.AddColumn("next_attempt_at", "timestamptz").NotNull().DefaultValueByExpression("now()");
        table.AddColumn("claimed_until", "timestamptz");
        table.AddColumn("sent_at", "timestamptz");
        table.AddColumn("dead_at", "timestamptz");
        table.AddColumn<string>("last_error");
        table.Indexes.Add(new IndexDefinition("outbox_pending") { Columns = ["next_attempt_at", "id"], Predicate = "sent_at is null and dead_at is null" });
        return table;
    }

    private static Table Inbox(string schema)
    {
        // The inbox keeps what it acknowledged until it is handled, so a crash in between loses nothing.
        var table = new Table(new PostgresqlObjectName(schema, "inbox", SchemaUtils.IdentifierUsage.General));
        table.AddColumn<string>("message_key").AsPrimaryKey();
        table.AddColumn("received_at", "timestamptz").NotNull().DefaultValueByExpression("now()");
        table.AddColumn("handled_at", "timestamptz");
        table.AddColumn<string>("topic");
        table.AddColumn("payload", "bytea");
        table.Indexes.Add(new IndexDefinition("inbox_unhandled") { Columns = ["received_at"], Predicate = "handled_at is null" });
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
        return table;
    }
}
