namespace Propeller.Application.EventStore;

/// <summary>An event as stored: its body (a domain event), its place in the stream and in the global order (Marten's
/// sequence), and its metadata.</summary>
public sealed record StoredEvent(
    Guid EventId,
    long Sequence,
    string StreamId,
    long Version,
    string Type,
    object Data,
    EventMetadata Metadata);
