namespace Propeller.Application.Aggregates;

/// <summary>A folded aggregate and the stream version it reflects (0 when the stream does not exist).</summary>
public sealed record LoadedAggregate<TState>(TState State, long Version, bool Archived);
