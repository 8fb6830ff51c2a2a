using System.Globalization;
using Npgsql;

namespace Propeller.Bench.Support;

/// <summary>
/// What PostgreSQL did for this database so far (pg_stat_database: transactions committed, rows inserted, updated and
/// deleted), so a benchmark can print the work per task of its measured window. Unlike throughput, these counts do not
/// move with the machine's speed: a change that saves transactions or statements shows in them on one run (session 12).
/// PostgreSQL publishes a backend's counts at the end of its transactions, at most once a second, so a window of many
/// seconds is off by well under a percent.
/// </summary>
internal readonly record struct PgWork(long Commits, long Inserted, long Updated, long Deleted)
{
    public static async Task<PgWork> NowAsync(NpgsqlDataSource dataSource, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(dataSource);
        await using var command = dataSource.CreateCommand(
            "select xact_commit, tup_inserted, tup_updated, tup_deleted from pg_stat_database where datname = current_database()");
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        return await reader.ReadAsync(cancellationToken) ? new PgWork(reader.GetInt64(0), reader.GetInt64(1), reader.GetInt64(2), reader.GetInt64(3)) : default;
    }

    public static PgWork operator -(PgWork after, PgWork before) =>
        new(after.Commits - before.Commits, after.Inserted - before.Inserted, after.Updated - before.Updated, after.Deleted - before.Deleted);

    /// <summary>The counts per task as benchmark fields.</summary>
    public string PerTask(int tasks) => string.Create(
        CultureInfo.InvariantCulture,
        $"pg_commits_per_task={(double)Commits / tasks:F2} pg_rows_inserted_per_task={(double)Inserted / tasks:F2} pg_rows_updated_per_task={(double)Updated / tasks:F2} pg_rows_deleted_per_task={(double)Deleted / tasks:F2}");
}
