namespace Propeller.Application.EventStore;

/// <summary>
/// Metadata stored with every event (ARCHITECTURE.md §3): who asked, why, and when. <see cref="Headers"/> carries free
/// key/value pairs, such as the plugin decisions that applied.
/// </summary>
public sealed record EventMetadata(
    string? CorrelationId,
    string? CausationId,
    string? UserId,
    DateTimeOffset Timestamp,
    IReadOnlyDictionary<string, string>? Headers = null)
{
    public static EventMetadata At(DateTimeOffset timestamp) => new(null, null, null, timestamp);
}
