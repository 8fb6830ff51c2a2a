namespace Propeller.Application.EventStore;

/// <summary>Which slice of a stream to read: versions in [From, To], events up to a timestamp, archived or not.</summary>
public sealed record StreamReadOptions(long FromVersion = 1, long ToVersion = long.MaxValue, DateTimeOffset? Until = null, bool IncludeArchived = false)
{
    public static StreamReadOptions All { get; } = new();
}
