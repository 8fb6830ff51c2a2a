namespace Propeller.Application.EventStore;

/// <summary>Where an append landed: the stream's version before and after.</summary>
public readonly record struct AppendResult(string StreamId, long PreviousVersion, long NextVersion);
