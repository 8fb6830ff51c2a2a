namespace Propeller.Application.Changes;

/// <summary>A stream reached <paramref name="Version"/>; <paramref name="State"/> is its committed state when known.</summary>
public sealed record ChangeNotice(string StreamId, long Version, object? State);
