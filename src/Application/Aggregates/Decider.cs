using Propeller.Domain.Common;

namespace Propeller.Application.Aggregates;

/// <summary>An aggregate as the Application sees it: its stream type and its decider functions.</summary>
public sealed record Decider<TCommand, TEvent, TState>(
    string StreamType,
    TState Initial,
    Func<TCommand, TState, Decision<TEvent>> Decide,
    Func<TState, TEvent, TState> Evolve)
    where TEvent : class;
