using System.Text.Json;
using IEvent = JasperFx.Events.IEvent;
using StreamAction = JasperFx.Events.StreamAction;
using Marten;
using Microsoft.Extensions.Options;
using Marten.Exceptions;
using Marten.Events.Archiving;
using Npgsql;
using Propeller.Application.EventStore;
using Propeller.Application.Proplets;
using Propeller.Application.Tasks;
using Propeller.Domain.Proplets;
using Propeller.Domain.Tasks;

namespace Propeller.Infrastructure.MartenStore;

/// <summary>
/// The event store port on Marten 9 (ADR 0010): streams are Marten streams with Guid ids, appended with the expected
/// version through a Marten session, with correlation, causation, user and headers (the plugin decisions) in Marten's
/// metadata columns; Marten's inline projections (the task and proplet views) commit with the events. Each append is
/// one session and transaction (the manager's own batching is ADR 0016's, in its handlers). The manager's commands go
/// through Wolverine's handlers (ADR 0014); this port serves the history and replay reads, the projections' rebuilds
/// and appends made outside a handler.
/// </summary>
public sealed class MartenEventStore : IEventStore
{
    private readonly IDocumentStore _store;
    private readonly EventTypeRegistry _registry;
    private readonly NpgsqlDataSource _dataSource;
    private readonly EventStoreOptions _options;
    private readonly string _schema;

    public MartenEventStore(IDocumentStore store, NpgsqlDataSource dataSource, IOptions<EventStoreOptions> options, EventTypeRegistry registry)
    {
        ArgumentNullException.ThrowIfNull(options);
        _store = store;
        _registry = registry;
        _dataSource = dataSource;
        _options = options.Value;
        _schema = Sql.Identifier(_options.Schema);
    }

    public async Task<AppendResult> AppendAsync(string streamId, string streamType, ExpectedVersion expected, IReadOnlyList<object> events, EventMetadata metadata, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(events);
        ArgumentNullException.ThrowIfNull(metadata);
        ArgumentException.ThrowIfNullOrWhiteSpace(streamType);
        Validate(streamId, events);
        var id = MartenStreamIds.ToGuid(streamId);
        StreamAction action;
        try
        {
            await using var session = _store.LightweightSession();
            action = Append(session, id, streamType, expected, events, metadata);
            await session.SaveChangesAsync(cancellationToken);
        }
        catch (Exception ex) when (ex is JasperFx.ConcurrencyException or Marten.Exceptions.ExistingStreamIdCollisionException or JasperFx.Events.ExistingStreamIdCollisionException
            || (ex is MartenCommandException { InnerException: PostgresException { SqlState: PostgresErrorCodes.UniqueViolation } }))
        {
            // A unique violation: two first appends raced past the version check; the index on (stream, version) caught the second.
            throw new ConcurrencyException(streamId, expected, await VersionOfAsync(id, cancellationToken));
        }
        catch (InvalidStreamOperationException)
        {
            throw new StreamArchivedException(streamId);
        }

        var next = action.Events[^1].Version;
        return new AppendResult(streamId, next - events.Count, next);
    }

    /// <summary>
    /// Queues the append on <paramref name="session"/> with our metadata on each of its events (correlation,
    /// causation, user, headers: the session may hold other streams' appends with other metadata), the decision time
    /// and a v7 id per event (QuickWithServerTimestamps stores the timestamp given here).
    /// </summary>
    internal static StreamAction Append(IDocumentSession session, Guid id, string streamType, ExpectedVersion expected, IReadOnlyList<object> events, EventMetadata metadata)
    {
        var action = expected switch
        {
            { IsAny: true } => session.Events.Append(id, events),
            { Value: 0 } => session.Events.StartStream(AggregateTypeOf(streamType), id, events),

            // Marten takes the version the stream has *after* the append.
            _ => session.Events.Append(id, expected.Value + events.Count, events),
        };
        Stamp(action.Events, metadata);
        return action;
    }

    /// <summary>Our metadata on each event: the decision time, a v7 id, correlation, causation, user, headers.</summary>
    internal static void Stamp(IReadOnlyList<IEvent> events, EventMetadata metadata)
    {
        foreach (var e in events)
        {
            e.Timestamp = metadata.Timestamp;
            e.Id = Guid.CreateVersion7(metadata.Timestamp);
            e.CorrelationId = metadata.CorrelationId;
            e.CausationId = metadata.CausationId;
            e.UserName = metadata.UserId;
            foreach (var (key, value) in metadata.Headers ?? new Dictionary<string, string>())
            {
                e.SetHeader(key, value);
            }
        }
    }

    private static Type AggregateTypeOf(string streamType) => streamType switch
    {
        TaskAggregate.StreamType => typeof(TaskState),
        PropletAggregate.StreamType => typeof(PropletState),
        _ => typeof(object),
    };

    public async Task<EventStream?> ReadStreamAsync(string streamId, StreamReadOptions options, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(options);
        ValidateStreamId(streamId);
        var id = MartenStreamIds.ToGuid(streamId);
        await using var session = _store.QuerySession();
        var state = await session.Events.FetchStreamStateAsync(id, cancellationToken);
        var streamType = MartenStreamIds.TypeOf(streamId);
        if (state is null || (state.IsArchived && !options.IncludeArchived) || !Holds(streamType, state.AggregateType))
        {
            return null;
        }

        // Npgsql writes a timestamptz from a DateTimeOffset in UTC only (any other offset throws): a time read with its
        // offset (GET /tasks/{id}?at=...+05:00) is the same instant in UTC.
        options = options with { Until = options.Until?.ToUniversalTime() };
        var from = Math.Max(1, options.FromVersion);
        IReadOnlyList<IEvent> events;
        try
        {
            // Nothing past the stream's version to read (a read of the version alone, a page past the end): no query.
            events = from > state.Version ? []
                : state.IsArchived
                ? await ArchivedEventsAsync(session, id, from, options, cancellationToken)
                : await session.Events.FetchStreamAsync(id, options.ToVersion == long.MaxValue ? 0 : options.ToVersion, options.Until, from, cancellationToken);
        }
        catch (Exception ex) when (ex is Marten.Exceptions.UnknownEventTypeException or JasperFx.Events.UnknownEventTypeException)
        {
            // Never skipped silently: the history would lie. The stored alias and where it is, for the operator.
            var (alias, version) = await FirstUnknownAliasAsync(id, cancellationToken);
            throw new Propeller.Application.EventStore.UnknownEventTypeException(alias, streamId, version);
        }

        var stored = new List<StoredEvent>(events.Count);
        var next = from;
        foreach (var e in events)
        {
            if (e.Version < options.FromVersion)
            {
                continue;
            }

            if (options.Until is not null && e.Version != next)
            {
                // Times need not follow commit order (a queued batch, a retried race, another node's clock): the stream
                // as of a time ends before its first event later than it, or the fold would skip that event's effect.
                break;
            }

            stored.Add(ToStored(streamId, e));
            next = e.Version + 1;
        }

        return new EventStream(streamId, streamType, state.Version, state.IsArchived, stored);
    }

    /// <summary>
    /// Whether a stream of aggregate <paramref name="aggregateType"/> (null: not recorded) can be one of
    /// <paramref name="streamType"/>. A proplet id that is a UUID keys its stream by that UUID, as a task's id does
    /// (<see cref="MartenStreamIds"/>): GET /tasks/{a proplet's id}/history answered the proplet's events as a task's, and
    /// its replay (?version=, ?at=) failed with a 500 folding them into a task. Another type's stream is not found. Every
    /// stream the product starts records its type (a task's TaskState, a proplet's its document).
    /// </summary>
    private static bool Holds(string streamType, Type? aggregateType) => aggregateType is null || streamType switch
    {
        TaskAggregate.StreamType => aggregateType == typeof(TaskState),
        PropletAggregate.StreamType => aggregateType != typeof(TaskState),
        _ => true,
    };

    /// <summary>An archived stream's events (Marten's FetchStream leaves archived events out; an audit read wants them).</summary>
    private static async Task<IReadOnlyList<IEvent>> ArchivedEventsAsync(IQuerySession session, Guid id, long from, StreamReadOptions options, CancellationToken cancellationToken)
    {
        var query = session.Events.QueryAllRawEvents().Where(e => e.StreamId == id && e.MaybeArchived() && e.Version >= from && e.Version <= options.ToVersion);
        if (options.Until is { } until)
        {
            query = query.Where(e => e.Timestamp <= until);
        }

        return await query.OrderBy(e => e.Version).ToListAsync(cancellationToken);
    }

    /// <summary>The stream's version now (0 when it does not exist), for a conflict's message and retry log.</summary>
    private async Task<long> VersionOfAsync(Guid id, CancellationToken cancellationToken)
    {
        await using var session = _store.QuerySession();
        return (await session.Events.FetchStreamStateAsync(id, cancellationToken))?.Version ?? 0;
    }

    /// <summary>The stream's first event whose alias is not registered (Marten's exception does not say where it is).</summary>
    private async Task<(string Alias, long Version)> FirstUnknownAliasAsync(Guid id, CancellationToken cancellationToken)
    {
        await using var command = _dataSource.CreateCommand(
            $"select type, version from {_schema}.mt_events where stream_id = $1 and type <> all($2) order by version limit 1");
        command.Parameters.Add(new NpgsqlParameter { Value = id });
        command.Parameters.Add(new NpgsqlParameter { Value = _registry.Aliases.ToArray() });
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        return await reader.ReadAsync(cancellationToken) ? (reader.GetString(0), reader.GetInt64(1)) : ("?", -1);
    }

    public async Task<bool> ArchiveStreamAsync(string streamId, CancellationToken cancellationToken)
    {
        ValidateStreamId(streamId);
        var id = MartenStreamIds.ToGuid(streamId);
        await using var session = _store.LightweightSession();
        if (await session.Events.FetchStreamStateAsync(id, cancellationToken) is null)
        {
            return false;
        }

        session.Events.ArchiveStream(id);
        await session.SaveChangesAsync(cancellationToken);
        return true;
    }

    /// <summary>Marten's event with its metadata as the port's stored event (headers come back as JSON values).</summary>
    internal static StoredEvent ToStored(string streamId, IEvent e)
    {
        Dictionary<string, string>? headers = null;
        if (e.Headers is { Count: > 0 } raw)
        {
            headers = new Dictionary<string, string>(raw.Count, StringComparer.Ordinal);
            foreach (var (key, value) in raw)
            {
                headers[key] = value switch
                {
                    string s => s,
                    JsonElement { ValueKind: JsonValueKind.String } json => json.GetString() ?? "",
                    JsonElement json => json.GetRawText(),
                    null => "",
                    _ => value.ToString() ?? "",
                };
            }
        }

        var metadata = new EventMetadata(e.CorrelationId, e.CausationId, e.UserName, e.Timestamp, headers);
        return new StoredEvent(e.Id, e.Sequence, streamId, e.Version, e.EventTypeName, e.Data, metadata);
    }

    private void Validate(string streamId, IReadOnlyList<object> events)
    {
        ValidateStreamId(streamId);
        if (events.Count == 0)
        {
            throw new EventStoreValidationException($"append to stream '{streamId}' has no events");
        }

        for (var i = 0; i < events.Count; i++)
        {
            var e = events[i] ?? throw new EventStoreValidationException($"event {i} of the append is null");

            // Only registered types: Marten would store any other under an alias of its own making.
            _registry.AliasOf(e.GetType());
            var size = JsonSerializer.SerializeToUtf8Bytes(e, e.GetType(), Serialization.JsonDefaults.Options).Length;
            if (size > _options.MaxEventBytes)
            {
                throw new EventStoreValidationException($"event {e.GetType().Name} is larger than {_options.MaxEventBytes} bytes");
            }
        }
    }

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
}
