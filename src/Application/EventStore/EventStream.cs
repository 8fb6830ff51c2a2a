namespace Propeller.Application.EventStore;

/// <summary>A stream read forward: its header and the requested slice of its events, oldest first.</summary>
public sealed record EventStream(string StreamId, string StreamType, long Version, bool Archived, IReadOnlyList<StoredEvent> Events);
