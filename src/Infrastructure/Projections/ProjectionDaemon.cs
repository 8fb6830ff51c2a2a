using System.Globalization;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Npgsql;
using Propeller.Application.EventStore;
using Propeller.Infrastructure.EventStore;

namespace Propeller.Infrastructure.Projections;

/// <summary>
/// Runs the async projections (replaces Marten's async daemon; ARCHITECTURE.md §3). Per projection: take or renew the
/// lease row (one node runs each projection; a crashed node's lease expires), load a page from the commit-safe global
/// reader, apply it and move the checkpoint in one transaction, fenced by the lease token and the previous checkpoint.
/// A failing batch is retried, then applied event by event so the failing event is found; that event pauses the
/// projection with the reason stored in its row. Nothing is ever skipped.
/// </summary>
public sealed class ProjectionDaemon
{
    private readonly NpgsqlDataSource _dataSource;
    private readonly IEventStore _store;
    private readonly ProjectionCatalog _catalog;
    private readonly ProjectionDaemonOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger<ProjectionDaemon> _logger;
    private readonly string _schema;

    public ProjectionDaemon(
        NpgsqlDataSource dataSource, IEventStore store, ProjectionCatalog catalog, IOptions<EventStoreOptions> storeOptions,
        IOptions<ProjectionDaemonOptions> options, TimeProvider time, ILogger<ProjectionDaemon> logger)
    {
        ArgumentNullException.ThrowIfNull(storeOptions);
        ArgumentNullException.ThrowIfNull(options);
        _dataSource = dataSource;
        _store = store;
        _catalog = catalog;
        _options = options.Value;
        _time = time;
        _logger = logger;
        _schema = Sql.Identifier(storeOptions.Value.Schema);
    }

    public string NodeId => _options.NodeId;

    /// <summary>Creates every registered projection's tables and the async projections' checkpoint rows.</summary>
    public async Task EnsureAsync(CancellationToken cancellationToken)
    {
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        await using (var context = new ProjectionContext(connection, transaction, _schema))
        {
            // Nodes starting at once would race on "create table if not exists"; serialise them per schema.
            context.Add("select pg_advisory_xact_lock(hashtext('propeller.projections.' || $1))", _schema);
            await context.FlushAsync(cancellationToken);
            foreach (var projection in _catalog.Inline.Concat(_catalog.Async))
            {
                await projection.EnsureSchemaAsync(context, cancellationToken);
                await context.FlushAsync(cancellationToken);
            }

            foreach (var projection in _catalog.Async)
            {
                context.Add($"insert into {_schema}.projections (name) values ($1) on conflict (name) do nothing", projection.Name);
            }

            await context.FlushAsync(cancellationToken);
        }

        await transaction.CommitAsync(cancellationToken);
    }

    /// <summary>Runs every async projection until <paramref name="cancellationToken"/> fires; then releases the leases.</summary>
    public async Task RunAsync(CancellationToken cancellationToken)
    {
        await EnsureAsync(cancellationToken);
        await Task.WhenAll(_catalog.Async.Select(p => RunProjectionAsync(p, cancellationToken)));
    }

    /// <summary>Asks the node that runs <paramref name="name"/> to reset it and replay from the first event.</summary>
    public Task RequestRebuildAsync(string name, CancellationToken cancellationToken) =>
        ExecuteAsync($"update {_schema}.projections set rebuild_requested = true, updated_at = now() where name = $1", cancellationToken, name);

    /// <summary>Clears a pause after the cause was fixed; the failing event is applied again.</summary>
    public Task ResumeAsync(string name, CancellationToken cancellationToken) =>
        ExecuteAsync($"""
            update {_schema}.projections
               set status = 'running', error = null, failed_stream_id = null, failed_version = null, failed_seq = null, failed_at = null, updated_at = now()
             where name = $1
            """, cancellationToken, name);

    public async Task<ProjectionStatus?> GetStatusAsync(string name, CancellationToken cancellationToken)
    {
        await using var command = _dataSource.CreateCommand($"""
            select name, last_tx_id::text, last_seq, events_applied, status, error, failed_stream_id, failed_version,
                   rebuild_requested, rebuilds, lease_owner, lease_expires_at
              from {_schema}.projections where name = $1
            """);
        command.Parameters.AddWithValue(name);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        if (!await reader.ReadAsync(cancellationToken))
        {
            return null;
        }

        return new ProjectionStatus(
            reader.GetString(0),
            new GlobalPosition(ulong.Parse(reader.GetString(1), CultureInfo.InvariantCulture), reader.GetInt64(2)),
            reader.GetInt64(3),
            reader.GetString(4),
            await reader.IsDBNullAsync(5, cancellationToken) ? null : reader.GetString(5),
            await reader.IsDBNullAsync(6, cancellationToken) ? null : reader.GetString(6),
            await reader.IsDBNullAsync(7, cancellationToken) ? null : reader.GetInt64(7),
            reader.GetBoolean(8),
            reader.GetInt32(9),
            await reader.IsDBNullAsync(10, cancellationToken) ? null : reader.GetString(10),
            await reader.IsDBNullAsync(11, cancellationToken) ? null : await reader.GetFieldValueAsync<DateTimeOffset>(11, cancellationToken));
    }

    /// <summary>
    /// Waits until the projection has applied every event committed before this call (for tests, benchmarks and
    /// read-your-writes endpoints). False on timeout; throws when the projection is paused.
    /// </summary>
    public async Task<bool> WaitForCatchUpAsync(string name, TimeSpan timeout, CancellationToken cancellationToken)
    {
        var projection = _catalog.Async.FirstOrDefault(p => p.Name == name) ?? throw new ArgumentException($"no async projection named '{name}'", nameof(name));
        var target = await LastVisiblePositionAsync(projection.EventTypes, cancellationToken);
        var deadline = _time.GetTimestamp() + (long)(timeout.TotalSeconds * _time.TimestampFrequency);
        while (true)
        {
            var status = await GetStatusAsync(name, cancellationToken);
            if (status is { IsPaused: true })
            {
                throw new InvalidOperationException($"projection '{name}' is paused: {status.Error}");
            }

            if (status is { RebuildRequested: false } && status.Checkpoint >= target)
            {
                return true;
            }

            if (_time.GetTimestamp() > deadline)
            {
                return false;
            }

            await Task.Delay(TimeSpan.FromMilliseconds(20), _time, cancellationToken);
        }
    }

    private async Task<GlobalPosition> LastVisiblePositionAsync(IReadOnlyCollection<string>? types, CancellationToken cancellationToken)
    {
        // Every event committed before this call, whether or not the cursor may read it yet: xmin is cluster-wide, so an
        // unrelated open transaction can hold the cursor back, and catching up means waiting for it.
        // Order by the qualified xid8 column: an unqualified "tx_id" would bind to the text output column.
        var filter = types is null ? "" : " where e.type = any($1)";
        await using var command = _dataSource.CreateCommand($"""
            select e.tx_id::text as tx, e.seq from {_schema}.events e{filter}
             order by e.tx_id desc, e.seq desc limit 1
            """);
        if (types is not null)
        {
            command.Parameters.AddWithValue(types.ToArray());
        }

        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        return await reader.ReadAsync(cancellationToken)
            ? new GlobalPosition(ulong.Parse(reader.GetString(0), CultureInfo.InvariantCulture), reader.GetInt64(1))
            : GlobalPosition.Start;
    }

    private async Task RunProjectionAsync(IProjection projection, CancellationToken cancellationToken)
    {
        Lease? lease = null;
        Task<IReadOnlyList<StoredEvent>>? prefetch = null;
        var prefetchFrom = GlobalPosition.Start;
        try
        {
            while (!cancellationToken.IsCancellationRequested)
            {
                try
                {
                    var current = await TakeOrRenewLeaseAsync(projection.Name, cancellationToken);
                    if (current is null)
                    {
                        lease = null;
                        await Task.Delay(_options.LeaseRetryInterval, _time, cancellationToken);
                        continue;
                    }

                    if (lease is null || lease.Token != current.Token)
                    {
                        ProjectionLog.LeaseTaken(_logger, projection.Name, _options.NodeId, current.Token, current.Checkpoint.ToString());
                    }

                    lease = current;
                    if (lease.Paused)
                    {
                        await Task.Delay(_options.PollInterval * 10, _time, cancellationToken);
                        continue;
                    }

                    if (lease.RebuildRequested)
                    {
                        await ResetForRebuildAsync(projection, lease, cancellationToken);
                        continue;
                    }

                    IReadOnlyList<StoredEvent> events;
                    try
                    {
                        // The page read ahead while the previous one was applied, when it starts where we are.
                        events = prefetch is not null && prefetchFrom == lease.Checkpoint
                            ? await prefetch
                            : await _store.ReadAllAsync(lease.Checkpoint, _options.BatchSize, projection.EventTypes, cancellationToken);
                        prefetch = null;
                    }
                    catch (Exception ex) when (ex is UnknownEventTypeException or InvalidDataException)
                    {
                        prefetch = null;
                        var (stream, version) = ex is UnknownEventTypeException unknown ? (unknown.StreamId, unknown.Version) : ((string?)null, (long?)null);
                        await PauseAsync(projection.Name, lease, stream, version, null, ex.Message, cancellationToken);
                        continue;
                    }

                    if (events.Count == 0)
                    {
                        await Task.Delay(_options.PollInterval, _time, cancellationToken);
                        continue;
                    }

                    // A full page means more is waiting: read the next page while this one is applied (rebuilds, catch-up).
                    if (events.Count == _options.BatchSize)
                    {
                        prefetchFrom = events[^1].Position;
                        prefetch = _store.ReadAllAsync(prefetchFrom, _options.BatchSize, projection.EventTypes, cancellationToken);
                    }

                    await ApplyWithPolicyAsync(projection, lease, events, cancellationToken);
                }
                catch (Exception ex) when (ex is NpgsqlException or TimeoutException && !cancellationToken.IsCancellationRequested)
                {
                    ProjectionLog.LoopError(_logger, ex, projection.Name);
                    await Task.Delay(_options.RetryDelay * 5, _time, cancellationToken);
                }
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // Stopping.
        }
        finally
        {
            if (prefetch is not null)
            {
                // Observe a read-ahead that is no longer needed, so its failure is not left unobserved.
                await prefetch.ContinueWith(static _ => { }, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
            }

            if (lease is not null)
            {
                await ReleaseLeaseAsync(projection.Name, lease);
            }
        }
    }

    private async Task ApplyWithPolicyAsync(IProjection projection, Lease lease, IReadOnlyList<StoredEvent> events, CancellationToken cancellationToken)
    {
        // Whole batch first; on repeated failure, event by event so the failing event is found and reported.
        if (await TryApplyAsync(projection, lease, events, events.Count == 1 ? _options.MaxApplyAttempts : 2, cancellationToken) is not { } error)
        {
            return;
        }

        if (events.Count > 1)
        {
            foreach (var single in events)
            {
                if (await TryApplyAsync(projection, lease, [single], _options.MaxApplyAttempts, cancellationToken) is { } singleError)
                {
                    await PauseAsync(projection.Name, lease, single.StreamId, single.Version, single.Position.Sequence, singleError.Message, cancellationToken);
                    return;
                }

                if (lease.Lost)
                {
                    return;
                }
            }

            return;
        }

        var only = events[0];
        await PauseAsync(projection.Name, lease, only.StreamId, only.Version, only.Position.Sequence, error.Message, cancellationToken);
    }

    /// <summary>Applies <paramref name="events"/> with retries; null on success (or when the lease moved), else the last error.</summary>
    private async Task<Exception?> TryApplyAsync(IProjection projection, Lease lease, IReadOnlyList<StoredEvent> events, int attempts, CancellationToken cancellationToken)
    {
        Exception? last = null;
        for (var attempt = 1; attempt <= attempts; attempt++)
        {
            try
            {
                await ApplyOnceAsync(projection, lease, events, cancellationToken);
                return null;
            }
            catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
            {
                last = ex;
                ProjectionLog.ApplyFailed(_logger, ex, projection.Name, attempt, attempts);
                if (attempt < attempts)
                {
                    await Task.Delay(_options.RetryDelay * attempt, _time, cancellationToken);
                }
            }
        }

        return last;
    }

    private async Task ApplyOnceAsync(IProjection projection, Lease lease, IReadOnlyList<StoredEvent> events, CancellationToken cancellationToken)
    {
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        var next = events[^1].Position;
        NpgsqlBatchCommand checkpoint;
        await using (var context = new ProjectionContext(connection, transaction, _schema))
        {
            await projection.ApplyAsync(context, events, cancellationToken);
            checkpoint = context.Add(
                $"""
                update {_schema}.projections
                   set last_tx_id = $1::text::xid8, last_seq = $2, events_applied = events_applied + $3, updated_at = now()
                 where name = $4 and lease_owner = $5 and lease_token = $6 and lease_expires_at > now()
                   and last_tx_id = $7::text::xid8 and last_seq = $8
                """,
                next.TransactionId.ToString(CultureInfo.InvariantCulture), next.Sequence, (long)events.Count,
                projection.Name, _options.NodeId, lease.Token,
                lease.Checkpoint.TransactionId.ToString(CultureInfo.InvariantCulture), lease.Checkpoint.Sequence);
            await context.FlushAsync(cancellationToken);
        }

        if (checkpoint.RecordsAffected != 1)
        {
            await transaction.RollbackAsync(cancellationToken);
            ProjectionLog.CheckpointMoved(_logger, projection.Name);
            lease.Lost = true;
            return;
        }

        await transaction.CommitAsync(cancellationToken);
        lease.Checkpoint = next;
    }

    private async Task ResetForRebuildAsync(IProjection projection, Lease lease, CancellationToken cancellationToken)
    {
        ProjectionLog.Rebuilding(_logger, projection.Name);
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        NpgsqlBatchCommand reset;
        await using (var context = new ProjectionContext(connection, transaction, _schema))
        {
            await projection.ResetAsync(context, cancellationToken);
            reset = context.Add(
                $"""
                update {_schema}.projections
                   set last_tx_id = '0', last_seq = 0, events_applied = 0, rebuild_requested = false, rebuilds = rebuilds + 1,
                       status = 'running', error = null, failed_stream_id = null, failed_version = null, failed_seq = null, failed_at = null,
                       updated_at = now()
                 where name = $1 and lease_owner = $2 and lease_token = $3
                """,
                projection.Name, _options.NodeId, lease.Token);
            await context.FlushAsync(cancellationToken);
        }

        if (reset.RecordsAffected == 1)
        {
            await transaction.CommitAsync(cancellationToken);
            lease.Checkpoint = GlobalPosition.Start;
        }
        else
        {
            await transaction.RollbackAsync(cancellationToken);
        }
    }

    private async Task PauseAsync(string name, Lease lease, string? streamId, long? version, long? sequence, string reason, CancellationToken cancellationToken)
    {
        ProjectionLog.Paused(_logger, name, streamId, version, sequence, reason);
        await ExecuteAsync(
            $"""
            update {_schema}.projections
               set status = 'paused', error = $2, failed_stream_id = $3, failed_version = $4, failed_seq = $5, failed_at = now(), updated_at = now()
             where name = $1 and lease_owner = $6 and lease_token = $7
            """,
            cancellationToken, name, reason, streamId, version, sequence, _options.NodeId, lease.Token);
    }

    private async Task<Lease?> TakeOrRenewLeaseAsync(string name, CancellationToken cancellationToken)
    {
        // A new token (fencing) whenever ownership changes hands; the same token while this node renews.
        await using var command = _dataSource.CreateCommand($"""
            update {_schema}.projections
               set lease_token = case when lease_owner = $2 and lease_expires_at > now() then lease_token else lease_token + 1 end,
                   lease_owner = $2,
                   lease_expires_at = now() + make_interval(secs => $3)
             where name = $1 and (lease_owner is null or lease_owner = $2 or lease_expires_at < now())
            returning lease_token, last_tx_id::text, last_seq, status, rebuild_requested
            """);
        command.Parameters.AddWithValue(name);
        command.Parameters.AddWithValue(_options.NodeId);
        command.Parameters.AddWithValue(_options.LeaseDuration.TotalSeconds);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        if (!await reader.ReadAsync(cancellationToken))
        {
            return null;
        }

        return new Lease(reader.GetInt64(0))
        {
            Checkpoint = new GlobalPosition(ulong.Parse(reader.GetString(1), CultureInfo.InvariantCulture), reader.GetInt64(2)),
            Paused = reader.GetString(3) == ProjectionStatus.Paused,
            RebuildRequested = reader.GetBoolean(4),
        };
    }

    private async Task ReleaseLeaseAsync(string name, Lease lease)
    {
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
            await ExecuteAsync(
                $"update {_schema}.projections set lease_owner = null, lease_expires_at = null where name = $1 and lease_owner = $2 and lease_token = $3",
                timeout.Token, name, _options.NodeId, lease.Token);
        }
        catch (Exception ex) when (ex is NpgsqlException or OperationCanceledException or TimeoutException)
        {
            // The lease expires by itself; another node takes over after LeaseDuration.
            ProjectionLog.LoopError(_logger, ex, name);
        }
    }

    private async Task ExecuteAsync(string sql, CancellationToken cancellationToken, params object?[] values)
    {
        await using var command = _dataSource.CreateCommand(sql);
        foreach (var value in values)
        {
            command.Parameters.Add(new NpgsqlParameter { Value = value ?? DBNull.Value });
        }

        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    private sealed class Lease(long token)
    {
        public long Token { get; } = token;

        public GlobalPosition Checkpoint { get; set; }

        public bool Paused { get; init; }

        public bool RebuildRequested { get; init; }

        public bool Lost { get; set; }
    }
}
