namespace Propeller.Application.EventStore;

/// <summary>Where an append landed: the stream's version before and after, and the ids of the outbox rows written with it.</summary>
public readonly record struct AppendResult(string StreamId, long PreviousVersion, long NextVersion)
{
    /// <summary>The outbox rows' ids, in the order of the messages given to the append (empty without messages).</summary>
    public IReadOnlyList<long> OutboxIds { get; init; } = [];
}
