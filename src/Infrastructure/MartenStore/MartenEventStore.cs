using System.Text.Json;
using IEvent = JasperFx.Events.IEvent;
using StreamAction = JasperFx.Events.StreamAction;
using Marten;
using Microsoft.Extensions.Options;
using Marten.Exceptions;
using Marten.Services;
using Npgsql;
using Propeller.Application.EventStore;
using Propeller.Application.Messaging;
using Propeller.Application.Proplets;
using Propeller.Application.Tasks;
using Propeller.Domain.Proplets;
using Propeller.Domain.Tasks;
using Propeller.Infrastructure.EventStore;
using Propeller.Infrastructure.Projections;

namespace Propeller.Infrastructure.MartenStore;

/// <summary>
/// The event store port on Marten 9 (ADR 0010): streams are Marten streams with Guid ids, appended with the expected
/// version through a Marten session, with correlation, causation, user and headers (the plugin decisions) in Marten's
/// metadata columns. The session enlists in our transaction, so the inline views, the outbox rows and the inbox
/// receipt are committed with the events, as with the old store (their tables stay ours until they move to Marten
/// projections, issue 14).
/// </summary>
public sealed class MartenEventStore : IEventStore
{
    private readonly IDocumentStore _store;
    private readonly NpgsqlDataSource _dataSource;
    private readonly ProjectionCatalog _projections;
    private readonly EventStoreOptions _options;
    private readonly string _schema;

    public MartenEventStore(IDocumentStore store, NpgsqlDataSource dataSource, ProjectionCatalog projections, IOptions<EventStoreOptions> options)
    {
        ArgumentNullException.ThrowIfNull(options);
        _store = store;
        _dataSource = dataSource;
        _projections = projections;
        _options = options.Value;
        _schema = Sql.Identifier(_options.Schema);
    }

    public Task<AppendResult> AppendAsync(string streamId, string streamType, ExpectedVersion expected, IReadOnlyList<object> events, EventMetadata metadata, CancellationToken cancellationToken) =>
        AppendAsync(streamId, streamType, expected, events, metadata, [], null, cancellationToken);

    public Task<AppendResult> AppendAsync(
        string streamId, string streamType, ExpectedVersion expected, IReadOnlyList<object> events, EventMetadata metadata,
        IReadOnlyList<OutgoingMessage> outbox, CancellationToken cancellationToken) =>
        AppendAsync(streamId, streamType, expected, events, metadata, outbox, null, cancellationToken);

    public async Task<AppendResult> AppendAsync(
        string streamId, string streamType, ExpectedVersion expected, IReadOnlyList<object> events, EventMetadata metadata,
        IReadOnlyList<OutgoingMessage> outbox, InboxReceipt? received, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(events);
        ArgumentNullException.ThrowIfNull(metadata);
        ArgumentNullException.ThrowIfNull(outbox);
        ArgumentException.ThrowIfNullOrWhiteSpace(streamType);
        Validate(streamId, events);
        var id = MartenStreamIds.ToGuid(streamId);

        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        StreamAction action;
        try
        {
            await using var session = _store.LightweightSession(SessionOptions.ForTransaction(transaction));
            action = Append(session, id, streamType, expected, events, metadata);
            await session.SaveChangesAsync(cancellationToken);
        }
        catch (JasperFx.ConcurrencyException ex)
        {
            throw new ConcurrencyException(streamId, expected, -1, $"stream '{streamId}' is not at version {expected}: {ex.Message}");
        }
        catch (Exception ex) when (ex is Marten.Exceptions.ExistingStreamIdCollisionException or JasperFx.Events.ExistingStreamIdCollisionException)
        {
            throw new ConcurrencyException(streamId, expected, -1, $"stream '{streamId}' already exists (expected {expected})");
        }
        catch (InvalidStreamOperationException)
        {
            throw new StreamArchivedException(streamId);
        }
        catch (MartenCommandException ex) when (ex.InnerException is PostgresException { SqlState: PostgresErrorCodes.UniqueViolation } pg)
        {
            throw new ConcurrencyException(streamId, expected, -1, $"stream '{streamId}': concurrent append detected by the unique index ({pg.ConstraintName})");
        }

        var next = action.Events[^1].Version;
        var previous = next - events.Count;
        var stored = new StoredEvent[events.Count];
        for (var i = 0; i < events.Count; i++)
        {
            var e = action.Events[i];
            stored[i] = new StoredEvent(e.Id, new GlobalPosition(0, e.Sequence), streamId, previous + i + 1, e.EventTypeName, events[i], metadata);
        }

        var outboxIds = await OutboxRows.WriteAndCommitAsync(connection, transaction, _schema, _projections.Inline, stored, outbox, received, cancellationToken);
        return new AppendResult(streamId, previous, next) { OutboxIds = outboxIds };
    }

    /// <summary>
    /// Queues the append on <paramref name="session"/> with our metadata: correlation, causation and user on the
    /// session (Marten stamps every event with them), headers on the session, and the decision time and a v7 id per
    /// event (QuickWithServerTimestamps stores the timestamp given here).
    /// </summary>
    internal static StreamAction Append(IDocumentSession session, Guid id, string streamType, ExpectedVersion expected, IReadOnlyList<object> events, EventMetadata metadata)
    {
        session.CorrelationId = metadata.CorrelationId;
        session.CausationId = metadata.CausationId;
        session.LastModifiedBy = metadata.UserId;
        foreach (var (key, value) in metadata.Headers ?? new Dictionary<string, string>())
        {
            session.SetHeader(key, value);
        }

        var action = expected switch
        {
            { IsAny: true } => session.Events.Append(id, events),
            { Value: 0 } => session.Events.StartStream(AggregateTypeOf(streamType), id, events),

            // Marten takes the version the stream has *after* the append.
            _ => session.Events.Append(id, expected.Value + events.Count, events),
        };
        foreach (var e in action.Events)
        {
            e.Timestamp = metadata.Timestamp;
            e.Id = Guid.CreateVersion7(metadata.Timestamp);
        }

        return action;
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
        if (state is null || (state.IsArchived && !options.IncludeArchived))
        {
            return null;
        }

        var toVersion = options.ToVersion == long.MaxValue ? 0 : options.ToVersion;
        var events = await session.Events.FetchStreamAsync(id, toVersion, options.Until, Math.Max(1, options.FromVersion), cancellationToken);
        var stored = new List<StoredEvent>(events.Count);
        foreach (var e in events)
        {
            if (e.Version >= options.FromVersion)
            {
                stored.Add(ToStored(streamId, e));
            }
        }

        return new EventStream(streamId, MartenStreamIds.TypeOf(streamId), state.Version, state.IsArchived, stored);
    }

    /// <summary>
    /// Not on Marten: async projections run in Marten's daemon, which has its own commit-safe cursor (the high-water
    /// mark). Our ProjectionDaemon is not started with this store.
    /// </summary>
    public Task<IReadOnlyList<StoredEvent>> ReadAllAsync(GlobalPosition after, int maxCount, IReadOnlyCollection<string>? eventTypes, CancellationToken cancellationToken) =>
        throw new NotSupportedException("the Marten event store feeds async projections through Marten's daemon, not ReadAllAsync (ADR 0010)");

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
        return new StoredEvent(e.Id, new GlobalPosition(0, e.Sequence), streamId, e.Version, e.EventTypeName, e.Data, metadata);
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
