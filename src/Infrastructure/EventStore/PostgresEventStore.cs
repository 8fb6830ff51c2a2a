using System.Globalization;
using System.Text;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Npgsql;
using NpgsqlTypes;
using Propeller.Application.EventStore;
using Propeller.Application.Messaging;
using Propeller.Infrastructure.Projections;
using Propeller.Infrastructure.Serialization;

namespace Propeller.Infrastructure.EventStore;

/// <summary>
/// The event store on PostgreSQL (ARCHITECTURE.md §3). Appends are one call of <c>append_events</c>, which checks the
/// expected version under a stream lock before inserting; inline projections, when any read the appended types, run in
/// the same transaction. The global reader only returns events of transactions older than the snapshot's xmin, so a
/// cursor over (tx_id, seq) never skips a slow transaction that commits later.
/// </summary>
public sealed class PostgresEventStore : IEventStore
{
    private const int MaxOrderingRetries = 10;

    private readonly NpgsqlDataSource _dataSource;
    private readonly EventSerializer _serializer;
    private readonly ProjectionCatalog _projections;
    private readonly ILogger<PostgresEventStore> _logger;
    private readonly EventStoreOptions _options;
    private readonly string _schema;
    private readonly string _appendSql;
    private readonly string _readStreamSql;
    private readonly string _readStreamHeaderSql;
    private readonly string _readAllSql;
    private readonly string _readAllFilteredSql;
    private readonly string _lockStreamsSql;
    private readonly AppendGroupCommitter<OneBatchAppend, AppendResult>? _groups;

    public PostgresEventStore(NpgsqlDataSource dataSource, EventSerializer serializer, ProjectionCatalog projections, IOptions<EventStoreOptions> options, ILogger<PostgresEventStore> logger)
    {
        ArgumentNullException.ThrowIfNull(options);
        _dataSource = dataSource;
        _serializer = serializer;
        _projections = projections;
        _logger = logger;
        _options = options.Value;
        _schema = Sql.Identifier(_options.Schema);
        _appendSql = $"select o_version, o_tx::text, o_seqs from {_schema}.append_events($1, $2, $3, $4, $5, $6, $7, $8, $9)";
        _readStreamHeaderSql = $"select type, version, archived from {_schema}.streams where id = $1";
        _readAllSql = ReadAllSql(_schema, "");
        _readAllFilteredSql = ReadAllSql(_schema, " and e.type = any($4)");
        _lockStreamsSql = $"select {_schema}.lock_streams($1)";
        if (_options.GroupCommit.MaxConcurrentGroups > 0)
        {
            _groups = new AppendGroupCommitter<OneBatchAppend, AppendResult>(
                a => a.StreamId, group => CommitOneBatchAsync(group, CancellationToken.None), _options.GroupCommit.MaxConcurrentGroups, _options.GroupCommit.MaxGroupSize);
        }
        _readStreamSql = $"""
            select id, seq, tx_id::text as tx, version, type, data::text, metadata::text, created_at
              from {_schema}.events
             where stream_id = $1 and version >= $2 and version <= $3 and created_at <= $4
             order by version
            """;
    }

    internal string Schema => _schema;

    public Task<AppendResult> AppendAsync(string streamId, string streamType, ExpectedVersion expected, IReadOnlyList<object> events, EventMetadata metadata, CancellationToken cancellationToken) =>
        AppendAsync(streamId, streamType, expected, events, metadata, [], cancellationToken);

    public Task<AppendResult> AppendAsync(
        string streamId, string streamType, ExpectedVersion expected, IReadOnlyList<object> events, EventMetadata metadata,
        IReadOnlyList<OutgoingMessage> outbox, CancellationToken cancellationToken) =>
        AppendAsync(streamId, streamType, expected, events, metadata, outbox, null, cancellationToken);

    public async Task<AppendResult> AppendAsync(
        string streamId, string streamType, ExpectedVersion expected, IReadOnlyList<object> events, EventMetadata metadata,
        IReadOnlyList<OutgoingMessage> outbox, InboxReceipt? received, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(outbox);
        ValidateStreamId(streamId);
        ArgumentException.ThrowIfNullOrWhiteSpace(streamType);
        ArgumentNullException.ThrowIfNull(events);
        ArgumentNullException.ThrowIfNull(metadata);
        if (events.Count == 0)
        {
            throw new EventStoreValidationException($"append to stream '{streamId}' has no events");
        }

        var batch = Prepare(events, metadata);
        var inline = InlineProjectionsFor(batch.Types);
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                return inline.Count == 0 && outbox.Count == 0 && received is null
                    ? await AppendAutocommitAsync(streamId, streamType, expected, batch, cancellationToken)
                    : await AppendInTransactionAsync(streamId, streamType, expected, batch, events, metadata, inline, outbox, received, cancellationToken);
            }
            catch (PostgresException ex) when (ex.SqlState == Sql.OrderingState && attempt < MaxOrderingRetries)
            {
                EventStoreLog.OrderingRetry(_logger, streamId);
            }
            catch (PostgresException ex) when (ex.SqlState is Sql.ConcurrencyState or Sql.OrderingState)
            {
                // append_events puts the stream's actual version in HINT (DETAIL is redacted by Npgsql by default).
                throw new ConcurrencyException(streamId, expected, long.TryParse(ex.Hint, CultureInfo.InvariantCulture, out var actual) ? actual : -1);
            }
            catch (PostgresException ex) when (ex.SqlState == Sql.ArchivedState)
            {
                throw new StreamArchivedException(streamId);
            }
            catch (PostgresException ex) when (ex.SqlState == PostgresErrorCodes.UniqueViolation)
            {
                // The stream lock makes this unreachable; the unique (stream_id, version) index is the last line of defence.
                throw new ConcurrencyException(streamId, expected, -1, $"stream '{streamId}': concurrent append detected by the unique index ({ex.ConstraintName})");
            }
        }
    }

    private async Task<AppendResult> AppendAutocommitAsync(string streamId, string streamType, ExpectedVersion expected, PreparedBatch batch, CancellationToken cancellationToken)
    {
        await using var command = _dataSource.CreateCommand(_appendSql);
        AddAppendParameters(command.Parameters, streamId, streamType, expected, batch, positions: false);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        await reader.ReadAsync(cancellationToken);
        var next = reader.GetInt64(0);
        return new AppendResult(streamId, next - batch.Types.Length, next);
    }

    /// <summary>The append, the inline projections' writes and the outbox rows, in one transaction.</summary>
    private Task<AppendResult> AppendInTransactionAsync(
        string streamId, string streamType, ExpectedVersion expected, PreparedBatch batch, IReadOnlyList<object> events, EventMetadata metadata,
        IReadOnlyList<IProjection> inline, IReadOnlyList<OutgoingMessage> outbox, InboxReceipt? received, CancellationToken cancellationToken) =>
        expected.Value >= 0 && inline.All(p => !p.UsesGlobalPositions)
            ? AppendInOneBatchAsync(streamId, streamType, expected.Value, batch, events, metadata, inline, outbox, received, cancellationToken)
            : AppendWithPositionsAsync(streamId, streamType, expected, batch, events, metadata, inline, outbox, received, cancellationToken);

    /// <summary>
    /// The common case (an exact expected version, projections that need no global positions): the events' versions
    /// are known before the append, so the append, the projections' writes, the outbox rows and the inbox receipt go
    /// in one batch, which is its own transaction: one round trip. Concurrent such appends share it (group commit).
    /// </summary>
    private Task<AppendResult> AppendInOneBatchAsync(
        string streamId, string streamType, long previous, PreparedBatch batch, IReadOnlyList<object> events, EventMetadata metadata,
        IReadOnlyList<IProjection> inline, IReadOnlyList<OutgoingMessage> outbox, InboxReceipt? received, CancellationToken cancellationToken)
    {
        var stored = new StoredEvent[events.Count];
        for (var i = 0; i < events.Count; i++)
        {
            stored[i] = new StoredEvent(batch.Ids[i], GlobalPosition.Start, streamId, previous + i + 1, batch.Types[i], events[i], metadata);
        }

        var append = new OneBatchAppend(streamId, streamType, previous, batch, stored, inline, outbox, received);
        return _groups is null ? CommitAloneAsync(append, cancellationToken) : _groups.CommitAsync(append, cancellationToken);
    }

    private async Task<AppendResult> CommitAloneAsync(OneBatchAppend append, CancellationToken cancellationToken) =>
        (await CommitOneBatchAsync([append], cancellationToken))[0];

    /// <summary>
    /// Commits appends of different streams in one transaction and one round trip: the streams' locks first (in one
    /// order, before the transaction takes its id, so no two groups deadlock and (tx_id, seq) order still follows each
    /// stream's versions), then per append its <c>append_events</c> call, its projections' writes and its outbox rows.
    /// The batch is its own transaction (PostgreSQL runs the statements up to the batch's Sync as one implicit
    /// transaction, and Npgsql sends no error barriers): it commits when its last result has been read, and a failed
    /// version check rolls all of it back.
    /// </summary>
    private async Task<AppendResult[]> CommitOneBatchAsync(IReadOnlyList<OneBatchAppend> appends, CancellationToken cancellationToken)
    {
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
        var context = new ProjectionContext(connection, null, _schema);
        var results = new AppendResult[appends.Count];
        await using (context)
        {
            if (appends.Count > 1)
            {
                context.Add(_lockStreamsSql, (object)appends.Select(a => a.StreamId).ToArray());
            }

            foreach (var a in appends)
            {
                var first = context.Batch.BatchCommands.Count;
                foreach (var projection in a.Inline)
                {
                    var matching = projection.EventTypes is null ? a.Events : [.. a.Events.Where(e => projection.EventTypes.Contains(e.Type))];
                    await projection.ApplyAsync(context, matching, cancellationToken);
                }

                // The append goes before its projections' writes. A projection may have read before it was sent: the
                // append's version check still guards that read, since a row changed in between means the stream
                // moved and the append fails.
                var append = new NpgsqlBatchCommand(_appendSql);
                AddAppendParameters(append.Parameters, a.StreamId, a.StreamType, ExpectedVersion.Exact(a.Previous), a.Batch, positions: false);
                context.Batch.BatchCommands.Insert(first, append);
                OutboxRows.AddOutbox(context, _schema, a.Outbox);
                OutboxRows.AddReceipt(context, _schema, a.Received);
            }

            var read = await context.FlushReadingAsync(["o_version", "outbox_id"], cancellationToken);
            var outboxIds = read["outbox_id"];
            var taken = 0;
            for (var i = 0; i < appends.Count; i++)
            {
                var ids = appends[i].Outbox.Count == 0 ? [] : outboxIds.GetRange(taken, appends[i].Outbox.Count);
                taken += ids.Count;
                results[i] = new AppendResult(appends[i].StreamId, appends[i].Previous, read["o_version"][i]) { OutboxIds = ids };
            }
        }

        context.Committed();
        return results;
    }

    /// <summary>The general case: append first (the positions come back), then the projections' writes and the outbox rows.</summary>
    private async Task<AppendResult> AppendWithPositionsAsync(
        string streamId, string streamType, ExpectedVersion expected, PreparedBatch batch, IReadOnlyList<object> events, EventMetadata metadata,
        IReadOnlyList<IProjection> inline, IReadOnlyList<OutgoingMessage> outbox, InboxReceipt? received, CancellationToken cancellationToken)
    {
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        long next;
        ulong tx;
        long[] seqs;
        await using (var command = new NpgsqlCommand(_appendSql, connection, transaction))
        {
            AddAppendParameters(command.Parameters, streamId, streamType, expected, batch, positions: true);
            await using var reader = await command.ExecuteReaderAsync(cancellationToken);
            await reader.ReadAsync(cancellationToken);
            next = reader.GetInt64(0);
            tx = ulong.Parse(reader.GetString(1), CultureInfo.InvariantCulture);
            seqs = await reader.GetFieldValueAsync<long[]>(2, cancellationToken);
        }

        var previous = next - events.Count;
        var stored = new StoredEvent[events.Count];
        for (var i = 0; i < events.Count; i++)
        {
            stored[i] = new StoredEvent(batch.Ids[i], new GlobalPosition(tx, seqs[i]), streamId, previous + i + 1, batch.Types[i], events[i], metadata);
        }

        var outboxIds = await OutboxRows.WriteAndCommitAsync(connection, transaction, _schema, inline, stored, outbox, received, cancellationToken);
        return new AppendResult(streamId, previous, next) { OutboxIds = outboxIds };
    }

    private static void AddAppendParameters(NpgsqlParameterCollection parameters, string streamId, string streamType, ExpectedVersion expected, PreparedBatch batch, bool positions)
    {
        parameters.AddWithValue(streamId);
        parameters.AddWithValue(streamType);
        parameters.AddWithValue(expected.Value);
        parameters.AddWithValue(batch.Ids);
        parameters.AddWithValue(batch.Types);
        parameters.Add(new NpgsqlParameter { Value = batch.Data, NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Jsonb });
        parameters.Add(new NpgsqlParameter { Value = batch.Metadata, NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Jsonb });
        parameters.AddWithValue(batch.Timestamp);
        parameters.AddWithValue(positions);
    }

    private PreparedBatch Prepare(IReadOnlyList<object> events, EventMetadata metadata)
    {
        var count = events.Count;
        var ids = new Guid[count];
        var types = new string[count];
        var data = new string[count];
        var metadataJson = EventSerializer.SerializeMetadata(metadata);
        var metadataArray = new string[count];
        for (var i = 0; i < count; i++)
        {
            var @event = events[i] ?? throw new EventStoreValidationException($"event {i} of the append is null");
            (types[i], data[i]) = _serializer.Serialize(@event);
            if (data[i].Length > _options.MaxEventBytes / 4 && Encoding.UTF8.GetByteCount(data[i]) > _options.MaxEventBytes)
            {
                throw new EventStoreValidationException($"event '{types[i]}' is larger than {_options.MaxEventBytes} bytes");
            }

            ids[i] = Guid.CreateVersion7(metadata.Timestamp);
            metadataArray[i] = metadataJson;
        }

        return new PreparedBatch(ids, types, data, metadataArray, metadata.Timestamp);
    }

    private List<IProjection> InlineProjectionsFor(string[] types)
    {
        var inline = new List<IProjection>();
        foreach (var projection in _projections.Inline)
        {
            if (projection.EventTypes is null || types.Any(projection.EventTypes.Contains))
            {
                inline.Add(projection);
            }
        }

        return inline;
    }

    public async Task<EventStream?> ReadStreamAsync(string streamId, StreamReadOptions options, CancellationToken cancellationToken)
    {
        ValidateStreamId(streamId);
        ArgumentNullException.ThrowIfNull(options);
        await using var batch = _dataSource.CreateBatch();
        var header = new NpgsqlBatchCommand(_readStreamHeaderSql);
        header.Parameters.AddWithValue(streamId);
        var body = new NpgsqlBatchCommand(_readStreamSql);
        body.Parameters.AddWithValue(streamId);
        body.Parameters.AddWithValue(Math.Max(1, options.FromVersion));
        body.Parameters.AddWithValue(options.ToVersion);
        body.Parameters.AddWithValue(options.Until ?? DateTimeOffset.MaxValue);
        batch.BatchCommands.Add(header);
        batch.BatchCommands.Add(body);
        await using var reader = await batch.ExecuteReaderAsync(cancellationToken);
        if (!await reader.ReadAsync(cancellationToken))
        {
            return null;
        }

        var type = reader.GetString(0);
        var version = reader.GetInt64(1);
        var archived = reader.GetBoolean(2);
        if (archived && !options.IncludeArchived)
        {
            return null;
        }

        await reader.NextResultAsync(cancellationToken);
        var events = new List<StoredEvent>();
        var metadata = new MetadataCache();
        while (await reader.ReadAsync(cancellationToken))
        {
            events.Add(ReadEvent(reader, streamId, metadata));
        }

        return new EventStream(streamId, type, version, archived, events);
    }

    public async Task<IReadOnlyList<StoredEvent>> ReadAllAsync(GlobalPosition after, int maxCount, IReadOnlyCollection<string>? eventTypes, CancellationToken cancellationToken)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxCount, 1);
        await using var command = _dataSource.CreateCommand(eventTypes is null ? _readAllSql : _readAllFilteredSql);
        command.Parameters.AddWithValue(after.TransactionId.ToString(CultureInfo.InvariantCulture));
        command.Parameters.AddWithValue(after.Sequence);
        command.Parameters.AddWithValue(maxCount);
        if (eventTypes is not null)
        {
            command.Parameters.AddWithValue(eventTypes.ToArray());
        }

        var events = new List<StoredEvent>(Math.Min(maxCount, 1024));
        var metadata = new MetadataCache();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            events.Add(ReadEvent(reader, reader.GetString(8), metadata));
        }

        return events;
    }

    public async Task<bool> ArchiveStreamAsync(string streamId, CancellationToken cancellationToken)
    {
        ValidateStreamId(streamId);
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        await using (var lockStream = new NpgsqlCommand("select pg_advisory_xact_lock(hashtextextended($1, 7346))", connection, transaction))
        {
            lockStream.Parameters.AddWithValue(streamId);
            await lockStream.ExecuteNonQueryAsync(cancellationToken);
        }

        await using (var archive = new NpgsqlCommand($"update {_schema}.streams set archived = true, archived_at = now() where id = $1 and not archived", connection, transaction))
        {
            archive.Parameters.AddWithValue(streamId);
            await archive.ExecuteNonQueryAsync(cancellationToken);
        }

        await using var check = new NpgsqlCommand($"select archived from {_schema}.streams where id = $1", connection, transaction);
        check.Parameters.AddWithValue(streamId);
        var archived = await check.ExecuteScalarAsync(cancellationToken) is true;
        await transaction.CommitAsync(cancellationToken);
        return archived;
    }

    private StoredEvent ReadEvent(NpgsqlDataReader reader, string streamId, MetadataCache metadata)
    {
        var version = reader.GetInt64(3);
        var alias = reader.GetString(4);
        var data = _serializer.Deserialize(alias, reader.GetString(5), streamId, version);
        return new StoredEvent(
            reader.GetGuid(0),
            new GlobalPosition(ulong.Parse(reader.GetString(2), CultureInfo.InvariantCulture), reader.GetInt64(1)),
            streamId,
            version,
            alias,
            data,
            metadata.Get(reader.GetString(6), reader.GetFieldValue<DateTimeOffset>(7)));
    }

    /// <summary>Events of one append share their metadata: parse it once per run of equal rows.</summary>
    private sealed class MetadataCache
    {
        private string? _json;
        private DateTimeOffset _timestamp;
        private EventMetadata? _metadata;

        public EventMetadata Get(string json, DateTimeOffset timestamp)
        {
            if (_metadata is null || timestamp != _timestamp || !string.Equals(json, _json, StringComparison.Ordinal))
            {
                _metadata = EventSerializer.DeserializeMetadata(json, timestamp);
                _json = json;
                _timestamp = timestamp;
            }

            return _metadata;
        }
    }

    /// <summary>
    /// Only transactions older than the snapshot's xmin, in (tx_id, seq) order. The order columns are qualified: an
    /// unqualified "tx_id" would bind to the selected text column and sort as text.
    /// </summary>
    private static string ReadAllSql(string schema, string filter) => $"""
        select e.id, e.seq, e.tx_id::text as tx, e.version, e.type, e.data::text, e.metadata::text, e.created_at, e.stream_id
          from {schema}.events e
         where (e.tx_id, e.seq) > ($1::text::xid8, $2)
           and e.tx_id < pg_snapshot_xmin(pg_current_snapshot()){filter}
         order by e.tx_id, e.seq
         limit $3
        """;

    private void ValidateStreamId(string streamId)
    {
        if (string.IsNullOrWhiteSpace(streamId))
        {
            throw new EventStoreValidationException("stream id is empty");
        }

        if (streamId.Length > _options.MaxStreamIdLength)
        {
            throw new EventStoreValidationException($"stream id is {streamId.Length} characters long; the limit is {_options.MaxStreamIdLength}");
        }
    }

    private sealed record OneBatchAppend(
        string StreamId, string StreamType, long Previous, PreparedBatch Batch, StoredEvent[] Events, IReadOnlyList<IProjection> Inline, IReadOnlyList<OutgoingMessage> Outbox,
        InboxReceipt? Received);

    private sealed record PreparedBatch(Guid[] Ids, string[] Types, string[] Data, string[] Metadata, DateTimeOffset Timestamp);
}
