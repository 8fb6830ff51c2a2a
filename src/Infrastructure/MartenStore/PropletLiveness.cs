using System.Text.Json;
using System.Text.Json.Serialization;
using Marten;
using Marten.Services.BatchQuerying;
using Npgsql;
using Weasel.Postgresql;
using Weasel.Postgresql.Tables;

namespace Propeller.Infrastructure.MartenStore;

/// <summary>
/// A proplet's liveness (newest heartbeat, the last ten) and its last report of the tasks it holds, in a table of our
/// own beside <see cref="PropletDocument"/> (ADR 0010, amended): written only by these statements, never by a
/// projection, so a proplet event's inline upsert, which writes the whole document from what it loaded, cannot put an
/// older value back. A row belongs to one registration of the proplet (its document's <c>registered_at</c>): a new
/// registration starts liveness afresh, and a rebuilt view keeps it.
/// </summary>
public sealed record PropletLiveness(
    [property: JsonPropertyName("last_alive_at")] DateTimeOffset? LastAliveAt,
    [property: JsonPropertyName("alive_history")] IReadOnlyList<DateTimeOffset>? AliveHistory,
    [property: JsonPropertyName("held_reported_at")] DateTimeOffset? HeldReportedAt,
    [property: JsonPropertyName("id")] Guid Id)
{
    public const string TableName = "proplet_liveness";

    /// <summary>The heartbeats kept, oldest first.</summary>
    public const int HistoryLength = 10;

    /// <summary>
    /// How much later than the newest kept heartbeat a heartbeat must be to join the history: every manager node
    /// records each heartbeat (<c>control/proplet/alive</c> is not shared), each at its own "now", a few milliseconds
    /// apart. Half the least heartbeat interval a proplet may have (PROPLET_LIVELINESS_INTERVAL, at least 1 s), so a
    /// proplet's every heartbeat counts once however many nodes record it, unless a node handles it more than this late.
    /// </summary>
    public static readonly TimeSpan HistoryMargin = TimeSpan.FromMilliseconds(500);

    internal static Table Table(string schema)
    {
        var table = new Table(new PostgresqlObjectName(schema, TableName, SchemaUtils.IdentifierUsage.General));
        table.AddColumn<Guid>("id").AsPrimaryKey();
        table.AddColumn<string>("registration");
        table.AddColumn("last_alive_at", "timestamptz");
        table.AddColumn("alive_history", "timestamptz[]").NotNull().DefaultValueByExpression("'{}'");
        table.AddColumn("held_reported_at", "timestamptz");
        return table;
    }

    /// <summary>The registration a row belongs to: the document's, as stored (text, compared as such).</summary>
    private static string Registration(string document) => $"{document}.data -> 'state' ->> 'registered_at'";

    private static string Select(string schema, string where) =>
        $"select json_build_object('id', l.id, 'last_alive_at', l.last_alive_at, 'alive_history', l.alive_history, 'held_reported_at', l.held_reported_at)::text "
        + $"from {schema}.{TableName} l join {schema}.mt_doc_propletdocument d on d.id = l.id and l.registration is not distinct from {Registration("d")} {where}";

    /// <summary>The proplet's liveness read by <see cref="QueryAsync"/> (null: none recorded for its registration).</summary>
    public static async Task<PropletLiveness?> ReadAsync(Task<IReadOnlyList<string>> rows) => (await rows).Select(Parse).FirstOrDefault();

    /// <summary>Queues the read of one proplet's liveness in a batch (<see cref="ReadAsync"/> reads it).</summary>
    public static Task<IReadOnlyList<string>> QueryAsync(IBatchedQuery batch, Guid id)
    {
        ArgumentNullException.ThrowIfNull(batch);
        return batch.Query<string>(Select(batch.Parent.DocumentStore.Options.DatabaseSchemaName, "where l.id = ?"), id);
    }

    /// <summary>Queues the read of every proplet's liveness in a batch.</summary>
    public static Task<IReadOnlyList<string>> QueryAllAsync(IBatchedQuery batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        return batch.Query<string>(Select(batch.Parent.DocumentStore.Options.DatabaseSchemaName, ""));
    }

    /// <summary>Reads rows of <see cref="QueryAllAsync"/> by proplet.</summary>
    public static async Task<IReadOnlyDictionary<Guid, PropletLiveness>> ByIdAsync(Task<IReadOnlyList<string>> rows) =>
        (await rows).Select(Parse).ToDictionary(l => l.Id);

    /// <summary>The proplet's liveness, read in <paramref name="session"/> (its transaction, if it has one).</summary>
    public static async Task<PropletLiveness?> LoadAsync(IQuerySession session, Guid id, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(session);
        var rows = await session.QueryAsync<string>(Select(session.DocumentStore.Options.DatabaseSchemaName, "where l.id = ?"), cancellationToken, id);
        return rows.Select(Parse).FirstOrDefault();
    }

    /// <summary>
    /// Reads the newest heartbeat and locks the row until the session's transaction ends (begun here if need be): a
    /// heartbeat recorded meanwhile (<see cref="RecordHeartbeatSql"/>) waits for the commit, then reads the proplet as
    /// the transaction left it. The liveness check judges silence from this, not from a read outside its transaction.
    /// Null when none was recorded for the proplet's registration.
    /// </summary>
    public static async Task<DateTimeOffset?> LockLastAliveAsync(IDocumentSession session, Guid id, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(session);
        await session.BeginTransactionAsync(cancellationToken);
        var connection = session.Connection ?? throw new InvalidOperationException("the Marten session has no connection after starting its transaction");
        var schema = session.DocumentStore.Options.DatabaseSchemaName;
        await using var command = new NpgsqlCommand(
            $"select l.last_alive_at from {schema}.{TableName} l join {schema}.mt_doc_propletdocument d on d.id = l.id "
            + $"and l.registration is not distinct from {Registration("d")} where l.id = $1 for update of l", connection);
        command.Parameters.AddWithValue(id);
        return await command.ExecuteScalarAsync(cancellationToken) is DateTime at ? new DateTimeOffset(DateTime.SpecifyKind(at, DateTimeKind.Utc)) : null;
    }

    /// <summary>
    /// Records the time of the proplet's report of the tasks it holds in <paramref name="session"/>'s transaction (the
    /// later of the recorded one and <paramref name="at"/>: every node handles each report).
    /// </summary>
    public static void RecordHeldReport(IDocumentSession session, Guid id, DateTimeOffset at)
    {
        ArgumentNullException.ThrowIfNull(session);
        var schema = session.DocumentStore.Options.DatabaseSchemaName;
        session.QueueSqlCommand(
            $"""
             insert into {schema}.{TableName} as l (id, registration, held_reported_at)
             select d.id, {Registration("d")}, ?::timestamptz from {schema}.mt_doc_propletdocument d where d.id = ?
             on conflict (id) do update set
               registration = excluded.registration,
               last_alive_at = case when l.registration is distinct from excluded.registration then null else l.last_alive_at end,
               alive_history = case when l.registration is distinct from excluded.registration then array[]::timestamptz[] else l.alive_history end,
               held_reported_at = case when l.registration is distinct from excluded.registration then excluded.held_reported_at
                                       else greatest(l.held_reported_at, excluded.held_reported_at) end
             """, at.ToUniversalTime(), id);
    }

    /// <summary>
    /// A heartbeat as two statements in one round trip ($1 the proplet's key, $2 the heartbeat's time, $3 this node's
    /// clock, $4 <see cref="HistoryMargin"/>). The first records it atomically, no read-modify-write, for a registered
    /// proplet not deleted: the newest becomes the later of the recorded one, taken as no later than this node's clock
    /// (a node whose clock ran ahead, or an NTP step back, held the proplet alive for that lead), and this one; the
    /// history first drops the times later than this node's clock (a node ahead recorded them: kept, no heartbeat was
    /// later than them by the margin, so none joined the history for that lead, and the newest shown was in the future),
    /// then takes this one when it is later than the newest kept by more than the margin, keeping the last
    /// <see cref="HistoryLength"/>. The second reads whether the proplet is offline (no row: not
    /// registered, or deleted) in a snapshot of its own, taken after the first had the row: a liveness check that
    /// locked it (<see cref="LockLastAliveAsync"/>) and marked the proplet offline has committed by then, so the caller
    /// marks it online again.
    /// </summary>
    internal static string[] RecordHeartbeatSql(string schema) =>
    [
        $"""
         insert into {schema}.{TableName} as l (id, registration, last_alive_at, alive_history)
         select d.id, {Registration("d")}, $2, array[$2]::timestamptz[] from {schema}.mt_doc_propletdocument d
         where d.id = $1 and (d.data -> 'state' ->> 'deleted') is distinct from 'true'
         on conflict (id) do update set
           registration = excluded.registration,
           last_alive_at = case when l.registration is distinct from excluded.registration or l.last_alive_at is null then excluded.last_alive_at
                                else greatest(least(l.last_alive_at, $3), excluded.last_alive_at) end,
           alive_history = case
             when l.registration is distinct from excluded.registration then excluded.alive_history
             else (select case
                            when cardinality(k.kept) = 0 or excluded.last_alive_at > k.kept[cardinality(k.kept)] + $4
                              then (k.kept || excluded.last_alive_at)[greatest(1, cardinality(k.kept) + 2 - {HistoryLength}):]
                            else k.kept end
                   from (select array(select h from unnest(l.alive_history) with ordinality u(h, i) where h <= $3 order by i) as kept) k)
             end
         """,
        $"select (d.data -> 'state' ->> 'offline')::boolean from {schema}.mt_doc_propletdocument d where d.id = $1 and (d.data -> 'state' ->> 'deleted') is distinct from 'true'",
    ];

    /// <summary>
    /// Carries liveness over from proplet documents written before this table (their <c>last_alive_at</c>,
    /// <c>alive_history</c> and <c>held_reported_at</c>) into rows that do not exist yet; run at every schema step, it
    /// finds nothing once the projection rewrote those documents. Without it, a proplet that died around the upgrade,
    /// before any node recorded a heartbeat of it here, had no last sign and was never found silent.
    /// </summary>
    internal static string CarryOverSql(string schema) =>
        $"""
         insert into {schema}.{TableName} (id, registration, last_alive_at, alive_history, held_reported_at)
         select d.id, {Registration("d")}, (d.data ->> 'last_alive_at')::timestamptz,
                coalesce(array(select jsonb_array_elements_text(case when jsonb_typeof(d.data -> 'alive_history') = 'array' then d.data -> 'alive_history' else '[]'::jsonb end)::timestamptz), array[]::timestamptz[]),
                (d.data ->> 'held_reported_at')::timestamptz
         from {schema}.mt_doc_propletdocument d
         where (d.data ? 'last_alive_at' or d.data ? 'held_reported_at') and (d.data -> 'state' ->> 'deleted') is distinct from 'true'
         on conflict (id) do nothing
         """;

    private static PropletLiveness Parse(string json)
    {
        var row = JsonSerializer.Deserialize<PropletLiveness>(json) ?? throw new InvalidOperationException("a liveness row read as null");
        return row with
        {
            LastAliveAt = row.LastAliveAt?.ToUniversalTime(),
            AliveHistory = [.. (row.AliveHistory ?? []).Select(t => t.ToUniversalTime())],
            HeldReportedAt = row.HeldReportedAt?.ToUniversalTime(),
        };
    }
}
