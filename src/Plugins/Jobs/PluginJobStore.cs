using System.Text.RegularExpressions;
using Npgsql;
using NpgsqlTypes;

namespace Propeller.Plugins.Jobs;

/// <summary>
/// The job bridge's tables in their own schema (created by <see cref="MigrateAsync"/>, idempotent): <c>plugin_jobs</c>
/// (one row per job, its state and retry bookkeeping), <c>plugin_job_history</c> (the audit trail) and
/// <c>plugin_job_runners</c> (when a node last could run each plugin at each version, for the orphan drop). Times come from
/// the database clock, so every replica agrees on what is due.
/// </summary>
public sealed partial class PluginJobStore : IAsyncDisposable
{
    public const string QueueName = "plugins";

    /// <summary>The error of a job whose last allowed attempt never finished (its lease ran out).</summary>
    public const string AttemptsSpent = "the last attempt never finished (lease expired) and max_retry is reached";

    /// <summary>The error of a job dropped by <see cref="DropOrphansAsync"/>.</summary>
    public const string Orphaned = "not run within the orphan timeout: no node has its plugin active at its version";

    private readonly NpgsqlDataSource _dataSource;
    private readonly NpgsqlDataSource _insertSource;
    private readonly string _jobs;
    private readonly string _history;
    private readonly string _runners;
    private readonly string _schema;

    public PluginJobStore(PluginJobOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (!SchemaName().IsMatch(options.Schema))
        {
            throw new ArgumentException($"schema name {options.Schema} must match [a-z_][a-z0-9_]*", nameof(options));
        }

        _schema = options.Schema;
        _jobs = $"\"{_schema}\".plugin_jobs";
        _history = $"\"{_schema}\".plugin_job_history";
        _runners = $"\"{_schema}\".plugin_job_runners";
        _dataSource = NpgsqlDataSource.Create(options.ConnectionString);
        var seconds = Math.Max(1, (int)Math.Ceiling(options.EnqueueTimeout.TotalSeconds));
        var insert = new NpgsqlConnectionStringBuilder(options.ConnectionString) { CommandTimeout = seconds, Timeout = seconds };
        _insertSource = NpgsqlDataSource.Create(insert.ConnectionString);
    }

    public async Task MigrateAsync(CancellationToken cancellationToken)
    {
        var sql = $"""
            create schema if not exists "{_schema}";
            create table if not exists {_jobs} (
                id uuid primary key,
                plugin text not null,
                plugin_hash text not null,
                type text not null,
                user_type text not null,
                queue text not null default '{QueueName}',
                payload text,
                enqueued_by text,
                idempotency_key text,
                unique_key text,
                unique_until timestamptz,
                state text not null default 'pending',
                attempts int not null default 0,
                max_retry int not null,
                run_at timestamptz not null,
                locked_until timestamptz,
                last_error text,
                created_at timestamptz not null default now(),
                updated_at timestamptz not null default now());
            create unique index if not exists plugin_jobs_idempotency on {_jobs} (plugin, idempotency_key) where idempotency_key is not null;
            create index if not exists plugin_jobs_due on {_jobs} (plugin, run_at) where state in ('pending', 'running');
            create index if not exists plugin_jobs_unique on {_jobs} (plugin, unique_key) where unique_key is not null;
            create index if not exists plugin_jobs_ended on {_jobs} (updated_at) where state in ('done', 'failed', 'dropped');
            create table if not exists {_history} (
                n bigserial primary key,
                job_id uuid not null,
                at timestamptz not null default now(),
                event text not null,
                attempt int not null default 0,
                detail text);
            create index if not exists plugin_job_history_job on {_history} (job_id, n);
            create table if not exists {_runners} (
                plugin text not null,
                plugin_hash text not null,
                seen_at timestamptz not null,
                primary key (plugin, plugin_hash));
            """;
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        await using (var lockCommand = new NpgsqlCommand("select pg_advisory_xact_lock(hashtext($1))", connection, transaction))
        {
            lockCommand.Parameters.Add(new NpgsqlParameter { Value = "propeller-plugin-jobs:" + _schema });
            await lockCommand.ExecuteNonQueryAsync(cancellationToken);
        }

        await using (var command = new NpgsqlCommand(sql, connection, transaction))
        {
            await command.ExecuteNonQueryAsync(cancellationToken);
        }

        await transaction.CommitAsync(cancellationToken);
    }

    /// <summary>
    /// Inserts a job. An existing idempotency key returns the existing job's id (<see cref="PluginJobInsertOutcome.Repeated"/>);
    /// a live <c>unique_for</c> duplicate is <see cref="PluginJobInsertOutcome.Duplicate"/>. <paramref name="admit"/> (the
    /// rate limit) is asked only for a job that would be stored, just before the insert: a repeated key or a duplicate
    /// costs the plugin nothing, and false is <see cref="PluginJobInsertOutcome.Refused"/> with nothing stored. It runs
    /// inside the plugin's host call, outside the reach of its interrupt: <paramref name="cancellationToken"/> is its one
    /// deadline, for connecting, the <c>unique_for</c> lock and every statement.
    /// </summary>
    internal async Task<PluginJobInsertResult> InsertAsync(NewPluginJob job, Func<bool>? admit, CancellationToken cancellationToken)
    {
        await using var connection = await _insertSource.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        if (job.IdempotencyKey is not null && await ExistingIdAsync(connection, transaction, job, cancellationToken) is { } repeated)
        {
            // A repeated key returns the first job's id before anything else: a retried hook repeating an enqueue with both
            // options got EEXIST from the unique_for check while its window was open.
            await transaction.CommitAsync(cancellationToken);
            return new(PluginJobInsertOutcome.Repeated, repeated);
        }

        if (job.UniqueKey is not null)
        {
            await using (var serialize = new NpgsqlCommand("select pg_advisory_xact_lock(hashtext($1))", connection, transaction))
            {
                serialize.Parameters.Add(new NpgsqlParameter { Value = job.Plugin + "/" + job.UniqueKey });
                await serialize.ExecuteNonQueryAsync(cancellationToken);
            }

            await using var check = new NpgsqlCommand($"select 1 from {_jobs} where plugin = $2 and unique_key = $1 and unique_until > now() limit 1", connection, transaction);
            check.Parameters.Add(new NpgsqlParameter { Value = job.UniqueKey });
            check.Parameters.Add(new NpgsqlParameter { Value = job.Plugin });
            if (await check.ExecuteScalarAsync(cancellationToken) is not null)
            {
                return new(PluginJobInsertOutcome.Duplicate, default);
            }
        }

        if (admit is not null && !admit())
        {
            return new(PluginJobInsertOutcome.Refused, default);
        }

        await using var insert = new NpgsqlCommand(
            $"""
            insert into {_jobs} (id, plugin, plugin_hash, type, user_type, payload, enqueued_by, idempotency_key, unique_key, unique_until, max_retry, run_at)
            values ($1, $2, $3, $4, $5, $6, $7, $8, $9, case when $10::double precision is null then null else now() + make_interval(secs => $10) end,
                    $11, now() + make_interval(secs => $12))
            on conflict (plugin, idempotency_key) where idempotency_key is not null do nothing
            returning id
            """,
            connection,
            transaction);
        insert.Parameters.Add(new NpgsqlParameter { Value = job.Id });
        insert.Parameters.Add(new NpgsqlParameter { Value = job.Plugin });
        insert.Parameters.Add(new NpgsqlParameter { Value = job.PluginHash });
        insert.Parameters.Add(new NpgsqlParameter { Value = job.Type });
        insert.Parameters.Add(new NpgsqlParameter { Value = job.UserType });
        insert.Parameters.Add(new NpgsqlParameter { Value = (object?)job.Payload ?? DBNull.Value, NpgsqlDbType = NpgsqlDbType.Text });
        insert.Parameters.Add(new NpgsqlParameter { Value = (object?)job.EnqueuedBy ?? DBNull.Value, NpgsqlDbType = NpgsqlDbType.Text });
        insert.Parameters.Add(new NpgsqlParameter { Value = (object?)job.IdempotencyKey ?? DBNull.Value, NpgsqlDbType = NpgsqlDbType.Text });
        insert.Parameters.Add(new NpgsqlParameter { Value = (object?)job.UniqueKey ?? DBNull.Value, NpgsqlDbType = NpgsqlDbType.Text });
        insert.Parameters.Add(new NpgsqlParameter { Value = (object?)job.UniqueForSeconds ?? DBNull.Value, NpgsqlDbType = NpgsqlDbType.Double });
        insert.Parameters.Add(new NpgsqlParameter { Value = job.MaxRetry });
        insert.Parameters.Add(new NpgsqlParameter { Value = job.DelaySeconds, NpgsqlDbType = NpgsqlDbType.Double });
        if (await insert.ExecuteScalarAsync(cancellationToken) is not Guid id)
        {
            var found = (await ExistingIdAsync(connection, transaction, job, cancellationToken))!.Value; // inserted by a concurrent enqueue of the key
            await transaction.CommitAsync(cancellationToken);
            return new(PluginJobInsertOutcome.Repeated, found);
        }

        await using (var history = new NpgsqlCommand($"insert into {_history} (job_id, event, detail) values ($1, 'enqueued', $2)", connection, transaction))
        {
            history.Parameters.Add(new NpgsqlParameter { Value = id });
            history.Parameters.Add(new NpgsqlParameter { Value = $"{job.Type} by {job.EnqueuedBy ?? "plugin"}" });
            await history.ExecuteNonQueryAsync(cancellationToken);
        }

        await transaction.CommitAsync(cancellationToken);
        return new(PluginJobInsertOutcome.Inserted, id);
    }

    /// <summary>The id of the job of <paramref name="job"/>'s plugin with its idempotency key; null when there is none.</summary>
    private async Task<Guid?> ExistingIdAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, NewPluginJob job, CancellationToken cancellationToken)
    {
        await using var existing = new NpgsqlCommand($"select id from {_jobs} where plugin = $1 and idempotency_key = $2", connection, transaction);
        existing.Parameters.Add(new NpgsqlParameter { Value = job.Plugin });
        existing.Parameters.Add(new NpgsqlParameter { Value = job.IdempotencyKey! });
        return await existing.ExecuteScalarAsync(cancellationToken) as Guid?;
    }

    /// <summary>
    /// Claims up to <paramref name="limit"/> due jobs of <paramref name="plugin"/> enqueued by its version
    /// <paramref name="pluginHash"/> (pending and due, or running with an expired lease after a crash): state running, one
    /// more attempt, leased for <paramref name="lease"/>. Jobs of another version are left to a node that has it (a
    /// rolling upgrade) or to <see cref="DropOrphansAsync"/>. A claim is
    /// identified by the job and its attempt number (each claim counts one more). A due job that has used its
    /// <c>max_retry</c> + 1 attempts already (its last run never finished) is not handed out again: it fails (event
    /// <c>dead</c>) in the same statement.
    /// </summary>
    public async Task<IReadOnlyList<PluginJob>> ClaimAsync(string plugin, string pluginHash, int limit, TimeSpan lease, CancellationToken cancellationToken)
    {
        await using var command = _dataSource.CreateCommand(
            $"""
            with due as (
                select id, attempts, max_retry from {_jobs}
                where plugin = $1 and plugin_hash = $5 and ((state = 'pending' and run_at <= now()) or (state = 'running' and locked_until < now()))
                order by run_at limit $2 for update skip locked),
            spent as (
                update {_jobs} j set state = 'failed', last_error = $4, locked_until = null, updated_at = now()
                from due where j.id = due.id and due.attempts > due.max_retry
                returning j.id, j.attempts),
            spent_history as (
                insert into {_history} (job_id, event, attempt, detail) select id, 'dead', attempts, $4 from spent)
            update {_jobs} j set state = 'running', attempts = j.attempts + 1, locked_until = now() + make_interval(secs => $3), updated_at = now()
            from due where j.id = due.id and due.attempts <= due.max_retry
            returning j.id, j.plugin, j.plugin_hash, j.type, j.user_type, j.payload, j.enqueued_by, j.attempts, j.max_retry, j.state, j.last_error
            """);
        command.Parameters.Add(new NpgsqlParameter { Value = plugin });
        command.Parameters.Add(new NpgsqlParameter { Value = limit });
        command.Parameters.Add(new NpgsqlParameter { Value = lease.TotalSeconds });
        command.Parameters.Add(new NpgsqlParameter { Value = AttemptsSpent });
        command.Parameters.Add(new NpgsqlParameter { Value = pluginHash });
        var jobs = new List<PluginJob>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            jobs.Add(Read(reader));
        }

        return jobs;
    }

    /// <summary>
    /// Records that this node can run <paramref name="runnable"/> (each plugin at its version, seen now), and drops (no
    /// retry) the jobs that no node has run for <paramref name="after"/> and that no node could run for as long: their
    /// plugin at their version is not in <paramref name="runnable"/>, and no node recorded it within
    /// <paramref name="after"/>. Those are pending ones due that long ago, and running ones whose lease ran out that long
    /// ago (their worker died). Before, every poll dropped every due job of a plugin missing from the polling node's set at
    /// that moment, across the shared database: a reload that skipped a half-copied file, a node without the plugin or a
    /// rolling upgrade lost jobs for good. And a job's age alone was taken to mean no node could run it: a backlog older
    /// than the timeout on the node that has the plugin (its concurrency is per node) was dropped by a node without it.
    /// A runner's row is written again only once a tenth of <paramref name="after"/> old (every node polls twice a second:
    /// rewriting it each time made dead rows and WAL for a time needed only to within the timeout), in a fixed order, so
    /// nodes writing the same rows take their locks alike. Returns how many.
    /// </summary>
    public async Task<int> DropOrphansAsync(IReadOnlyCollection<(string Plugin, string Hash)> runnable, TimeSpan after, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(runnable);
        await using var command = _dataSource.CreateCommand(
            $"""
            with seen as (
                insert into {_runners} (plugin, plugin_hash, seen_at) select distinct plugin, hash, now() from unnest($1::text[], $2::text[]) r(plugin, hash) order by 1, 2
                on conflict (plugin, plugin_hash) do update set seen_at = excluded.seen_at
                where {_runners}.seen_at < now() - make_interval(secs => $4 / 10)),
            dropped as (
                update {_jobs} j set state = 'dropped', last_error = $3, locked_until = null, updated_at = now()
                where ((j.state = 'pending' and j.run_at <= now() - make_interval(secs => $4))
                       or (j.state = 'running' and j.locked_until < now() - make_interval(secs => $4)))
                  and not exists (select 1 from unnest($1::text[], $2::text[]) r(plugin, hash) where r.plugin = j.plugin and r.hash = j.plugin_hash)
                  and not exists (select 1 from {_runners} s where s.plugin = j.plugin and s.plugin_hash = j.plugin_hash and s.seen_at >= now() - make_interval(secs => $4))
                returning j.id, j.attempts)
            insert into {_history} (job_id, event, attempt, detail) select id, 'dropped', attempts, $3 from dropped
            """);
        command.Parameters.Add(new NpgsqlParameter { Value = runnable.Select(r => r.Plugin).ToArray() });
        command.Parameters.Add(new NpgsqlParameter { Value = runnable.Select(r => r.Hash).ToArray() });
        command.Parameters.Add(new NpgsqlParameter { Value = Orphaned });
        command.Parameters.Add(new NpgsqlParameter { Value = after.TotalSeconds });
        return await command.ExecuteNonQueryAsync(cancellationToken);
    }

    /// <summary>
    /// Deletes up to <paramref name="limit"/> ended jobs (done, failed, dropped) last changed before
    /// <paramref name="retention"/> ago, with their history; a job whose <c>unique_for</c> window is still open is kept (it
    /// still refuses duplicates). Returns how many jobs were deleted. The partial index <c>plugin_jobs_ended</c> (ended jobs
    /// by <c>updated_at</c>) serves the filter: without it every prune, even one with nothing to delete, read the whole
    /// table (723–765 ms over 1,000,000 jobs, 1 ms now); with it, only the ended jobs past the cut are visited. The ids
    /// are an array, so each is deleted through the primary key: as <c>id in (select …)</c> PostgreSQL joined a full batch
    /// against a scan of the whole table (950–1,370 ms for 10,000 of 1,000,000 jobs, 346–352 ms now).
    /// </summary>
    public async Task<int> PruneAsync(TimeSpan retention, int limit, CancellationToken cancellationToken)
    {
        await using var command = _dataSource.CreateCommand(
            $"""
            with old as (
                delete from {_jobs} where id = any(array(
                    select id from {_jobs}
                    where state in ('done', 'failed', 'dropped') and updated_at < now() - make_interval(secs => $1)
                      and (unique_until is null or unique_until < now())
                    limit $2))
                returning id),
            history as (delete from {_history} h using old where h.job_id = old.id)
            select count(*)::int from old
            """);
        command.Parameters.Add(new NpgsqlParameter { Value = retention.TotalSeconds });
        command.Parameters.Add(new NpgsqlParameter { Value = limit });
        return (int)(await command.ExecuteScalarAsync(cancellationToken))!;
    }

    /// <summary>
    /// Records the end of the run of claim <paramref name="attempt"/>: <c>done</c>, <c>dropped</c> or <c>failed</c> (no
    /// retry), or back to <c>pending</c> after <paramref name="retryIn"/>. Returns false, and changes nothing, when that
    /// claim is no longer the job's (its lease ran out and the job was claimed again, released or failed since).
    /// </summary>
    public async Task<bool> FinishAsync(Guid id, int attempt, string state, string @event, string? detail, TimeSpan? retryIn, CancellationToken cancellationToken)
    {
        await using var command = _dataSource.CreateCommand(
            $"""
            with finished as (
                update {_jobs} set state = $2, last_error = coalesce($3, last_error), locked_until = null,
                    run_at = case when $4::double precision is null then run_at else now() + make_interval(secs => $4) end, updated_at = now()
                where id = $1 and state = 'running' and attempts = $5
                returning id)
            insert into {_history} (job_id, event, attempt, detail) select id, $6, $5, $3 from finished
            """);
        command.Parameters.Add(new NpgsqlParameter { Value = id });
        command.Parameters.Add(new NpgsqlParameter { Value = state });
        command.Parameters.Add(new NpgsqlParameter { Value = (object?)detail ?? DBNull.Value, NpgsqlDbType = NpgsqlDbType.Text });
        command.Parameters.Add(new NpgsqlParameter { Value = (object?)retryIn?.TotalSeconds ?? DBNull.Value, NpgsqlDbType = NpgsqlDbType.Double });
        command.Parameters.Add(new NpgsqlParameter { Value = attempt });
        command.Parameters.Add(new NpgsqlParameter { Value = @event });
        return await command.ExecuteNonQueryAsync(cancellationToken) > 0;
    }

    /// <summary>
    /// Records that claim <paramref name="attempt"/> starts its run (event <c>started</c>) and leases the job for
    /// <paramref name="lease"/> from now, the run's own time. Returns false, and changes nothing, when that claim is no
    /// longer the job's: its lease ran out before the run could start (the database was slow to take this record) and the
    /// job was claimed again; running it then would run it twice at once.
    /// </summary>
    public async Task<bool> StartAsync(Guid id, int attempt, TimeSpan lease, CancellationToken cancellationToken)
    {
        await using var command = _dataSource.CreateCommand(
            $"""
            with started as (
                update {_jobs} set locked_until = now() + make_interval(secs => $3), updated_at = now()
                where id = $1 and state = 'running' and attempts = $2
                returning id)
            insert into {_history} (job_id, event, attempt) select id, 'started', $2 from started
            """);
        command.Parameters.Add(new NpgsqlParameter { Value = id });
        command.Parameters.Add(new NpgsqlParameter { Value = attempt });
        command.Parameters.Add(new NpgsqlParameter { Value = lease.TotalSeconds });
        return await command.ExecuteNonQueryAsync(cancellationToken) > 0;
    }

    /// <summary>
    /// Hands claim <paramref name="attempt"/> of a job back untouched (shutdown while it ran): pending again, the attempt
    /// not counted. Nothing happens when the claim is no longer the job's.
    /// </summary>
    public async Task ReleaseAsync(Guid id, int attempt, CancellationToken cancellationToken)
    {
        await using var command = _dataSource.CreateCommand($"update {_jobs} set state = 'pending', attempts = greatest(attempts - 1, 0), locked_until = null, updated_at = now() where id = $1 and state = 'running' and attempts = $2");
        command.Parameters.Add(new NpgsqlParameter { Value = id });
        command.Parameters.Add(new NpgsqlParameter { Value = attempt });
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    public async Task<PluginJob?> GetAsync(Guid id, CancellationToken cancellationToken)
    {
        await using var command = _dataSource.CreateCommand(
            $"select id, plugin, plugin_hash, type, user_type, payload, enqueued_by, attempts, max_retry, state, last_error from {_jobs} where id = $1");
        command.Parameters.Add(new NpgsqlParameter { Value = id });
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        return await reader.ReadAsync(cancellationToken) ? Read(reader) : null;
    }

    public async Task<IReadOnlyList<PluginJobEvent>> HistoryAsync(Guid id, CancellationToken cancellationToken)
    {
        await using var command = _dataSource.CreateCommand($"select job_id, at, event, attempt, detail from {_history} where job_id = $1 order by n");
        command.Parameters.Add(new NpgsqlParameter { Value = id });
        var events = new List<PluginJobEvent>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            events.Add(new PluginJobEvent(
                reader.GetGuid(0),
                await reader.GetFieldValueAsync<DateTimeOffset>(1, cancellationToken),
                reader.GetString(2),
                reader.GetInt32(3),
                await reader.IsDBNullAsync(4, cancellationToken) ? null : reader.GetString(4)));
        }

        return events;
    }

    private static PluginJob Read(NpgsqlDataReader reader) => new(
        reader.GetGuid(0),
        reader.GetString(1),
        reader.GetString(2),
        reader.GetString(3),
        reader.GetString(4),
        reader.IsDBNull(5) ? null : reader.GetString(5),
        reader.IsDBNull(6) ? null : reader.GetString(6),
        reader.GetInt32(7),
        reader.GetInt32(8),
        reader.GetString(9),
        reader.IsDBNull(10) ? null : reader.GetString(10));

    public async ValueTask DisposeAsync()
    {
        await _insertSource.DisposeAsync();
        await _dataSource.DisposeAsync();
    }

    [GeneratedRegex("^[a-z_][a-z0-9_]*$")]
    private static partial Regex SchemaName();
}

/// <summary>A validated enqueue, ready to insert.</summary>
internal sealed record NewPluginJob(
    Guid Id,
    string Plugin,
    string PluginHash,
    string Type,
    string UserType,
    string? Payload,
    string? EnqueuedBy,
    string? IdempotencyKey,
    string? UniqueKey,
    double? UniqueForSeconds,
    int MaxRetry,
    double DelaySeconds);

/// <summary>What <see cref="PluginJobStore.InsertAsync"/> did.</summary>
internal enum PluginJobInsertOutcome
{
    /// <summary>The job was stored under its id.</summary>
    Inserted,

    /// <summary>A job with its idempotency key was there: its id.</summary>
    Repeated,

    /// <summary>A live <c>unique_for</c> duplicate: nothing stored.</summary>
    Duplicate,

    /// <summary>The admission (rate limit) said no: nothing stored.</summary>
    Refused,
}

/// <summary>The outcome of an insert and the job's id (for <see cref="PluginJobInsertOutcome.Inserted"/> and
/// <see cref="PluginJobInsertOutcome.Repeated"/>).</summary>
internal readonly record struct PluginJobInsertResult(PluginJobInsertOutcome Outcome, Guid Id);
