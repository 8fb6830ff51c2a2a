namespace Propeller.Application.EventStore;

/// <summary>A folded state as of <see cref="Version"/> of its stream.</summary>
public sealed record Snapshot<TState>(TState State, long Version);
