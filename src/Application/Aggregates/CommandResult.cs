using Propeller.Domain.Common;

namespace Propeller.Application.Aggregates;

/// <summary>
/// The outcome of a command: the events appended (none for an idempotent repeat) and the new state, or a rejection.
/// </summary>
public sealed record CommandResult<TEvent, TState>(TState State, long Version, IReadOnlyList<TEvent> Appended, Rejection? Rejection)
{
    public bool IsRejected => Rejection is not null;
}
