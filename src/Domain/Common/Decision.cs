namespace Propeller.Domain.Common;

/// <summary>
/// The outcome of <c>Decide</c>: the events to append (possibly none, for an idempotent repeat) or a rejection.
/// </summary>
public readonly record struct Decision<TEvent>
{
    private Decision(IReadOnlyList<TEvent> events, Rejection? rejection)
    {
        Events = events;
        Rejection = rejection;
    }

    /// <summary>The events to append; empty when the command was a repeat or was rejected.</summary>
    public IReadOnlyList<TEvent> Events { get; }

    /// <summary>Set when the command was refused.</summary>
    public Rejection? Rejection { get; }

    public bool IsRejected => Rejection is not null;

    public static Decision<TEvent> Accept(params TEvent[] events) => new(events, null);

    public static Decision<TEvent> Reject(Rejection rejection) => new([], rejection);

    public static implicit operator Decision<TEvent>(Rejection rejection) => Reject(rejection);
}
