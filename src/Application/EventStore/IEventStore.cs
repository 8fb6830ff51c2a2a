namespace Propeller.Application.EventStore;

/// <summary>
/// The event store port of the command path (ARCHITECTURE.md §3), implemented on Marten's streams (ADR 0010). Streams
/// hold ordered events with a version; appends are optimistic and atomic. Projections are Marten's, fed by its daemon.
/// </summary>
public interface IEventStore
{
    /// <summary>
    /// Appends <paramref name="events"/> to a stream in one round trip, after checking <paramref name="expected"/>.
    /// Creates the stream (of <paramref name="streamType"/>) when it does not exist.
    /// </summary>
    /// <exception cref="ConcurrencyException">The stream is not at the expected version.</exception>
    /// <exception cref="StreamArchivedException">The stream was archived.</exception>
    /// <exception cref="EventStoreValidationException">Empty or oversized stream id, no events, oversized event.</exception>
    Task<AppendResult> AppendAsync(string streamId, string streamType, ExpectedVersion expected, IReadOnlyList<object> events, EventMetadata metadata, CancellationToken cancellationToken);

    /// <summary>Reads a stream forward; null when it does not exist (or is archived and archived streams are not asked for).</summary>
    /// <exception cref="UnknownEventTypeException">A stored event's alias is not registered.</exception>
    Task<EventStream?> ReadStreamAsync(string streamId, StreamReadOptions options, CancellationToken cancellationToken);

    /// <summary>Marks a stream archived: kept for audit, hidden from normal reads, closed for appends.</summary>
    Task<bool> ArchiveStreamAsync(string streamId, CancellationToken cancellationToken);
}
