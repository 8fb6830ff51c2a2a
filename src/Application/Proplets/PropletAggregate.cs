using Propeller.Application.Aggregates;
using Propeller.Application.EventStore;
using Propeller.Domain.Proplets;
using static Propeller.Domain.Proplets.PropletEvent;

namespace Propeller.Application.Proplets;

/// <summary>How the proplet aggregate is stored: stream id, type and stable aliases.</summary>
public static class PropletAggregate
{
    public const string StreamType = "proplet";

    public static Decider<PropletCommand, PropletEvent, PropletState> Decider { get; } = new(
        StreamType, PropletDecider.Initial, PropletDecider.Decide, PropletDecider.Evolve);

    public static string StreamId(PropletId id) => $"proplet-{id}";

    public static EventTypeRegistry RegisterEvents(EventTypeRegistry registry)
    {
        ArgumentNullException.ThrowIfNull(registry);
        return registry
            .Register<PropletRegistered>("proplet.registered.v1")
            .Register<PropletMetadataChanged>("proplet.metadata_changed.v1")
            .Register<PropletWentOffline>("proplet.went_offline.v1")
            .Register<PropletCameOnline>("proplet.came_online.v1")
            .Register<PropletDeleted>("proplet.deleted.v1");
    }
}
