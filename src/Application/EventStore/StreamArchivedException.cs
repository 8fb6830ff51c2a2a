namespace Propeller.Application.EventStore;

/// <summary>An append to an archived stream.</summary>
public sealed class StreamArchivedException(string streamId) : Exception($"stream '{streamId}' is archived")
{
    public string StreamId { get; } = streamId;
}
