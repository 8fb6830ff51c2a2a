namespace Propeller.Domain.Proplets;

/// <summary>What happens to a proplet. Heartbeats are not events: they fold into the proplet view.</summary>
public abstract record PropletEvent
{
    private PropletEvent()
    {
    }

    public abstract PropletId PropletId { get; init; }

    public sealed record PropletRegistered(PropletId PropletId, string Name, PropletMetadata Metadata, DateTimeOffset RegisteredAt) : PropletEvent;

    public sealed record PropletMetadataChanged(PropletId PropletId, PropletMetadata Metadata, DateTimeOffset ChangedAt) : PropletEvent;

    /// <summary>Its Last Will arrived, or its heartbeats stopped.</summary>
    public sealed record PropletWentOffline(PropletId PropletId, string Reason, DateTimeOffset At) : PropletEvent;

    public sealed record PropletCameOnline(PropletId PropletId, DateTimeOffset At) : PropletEvent;

    public sealed record PropletDeleted(PropletId PropletId, DateTimeOffset DeletedAt) : PropletEvent;
}
