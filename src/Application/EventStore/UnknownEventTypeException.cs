namespace Propeller.Application.EventStore;

/// <summary>A stored event carries an alias that no registered type maps to. Never skipped silently.</summary>
public sealed class UnknownEventTypeException(string alias, string streamId, long version)
    : Exception($"unknown event type alias '{alias}' (stream '{streamId}', version {version})")
{
    public string Alias { get; } = alias;

    public string StreamId { get; } = streamId;

    public long Version { get; } = version;
}
