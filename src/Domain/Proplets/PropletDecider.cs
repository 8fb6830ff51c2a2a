using Propeller.Domain.Common;
using static Propeller.Domain.Proplets.PropletCommand;
using static Propeller.Domain.Proplets.PropletEvent;

namespace Propeller.Domain.Proplets;

/// <summary>
/// The proplet registry as a decider. Fixes of the original (spec §6): discovery of a known proplet refreshes its
/// metadata instead of being ignored; a Last Will marks it offline instead of counting as a heartbeat; deletion is
/// refused while tasks run on it, counted from the tasks themselves. A proplet named as the broadcast marker is refused.
/// </summary>
public static class PropletDecider
{
    public static PropletState Initial => PropletState.Initial;

    public static Decision<PropletEvent> Decide(PropletCommand command, PropletState state) => (command, state) switch
    {
        // The broadcast marker stands where a proplet's id would in a broadcast task's dispatch: a proplet by that name
        // would count those tasks as its own, and its going away would re-dispatch every one of them.
        (RegisterProplet c, _) when c.PropletId.Value == Tasks.TaskSpec.BroadcastTarget =>
            Rejection.Invalid($"proplet id {c.PropletId} is the broadcast marker: refused (give the proplet another PROPLET_ENTITY_ID)"),
        (RegisterProplet c, { Exists: false } or { Deleted: true }) =>
            Decision<PropletEvent>.Accept(new PropletRegistered(c.PropletId, c.Name, c.Metadata, c.At)),
        (RegisterProplet c, { Offline: true }) when c.Metadata == state.Metadata =>
            Decision<PropletEvent>.Accept(new PropletCameOnline(c.PropletId, c.At)),
        (RegisterProplet c, { Offline: true }) =>
            Decision<PropletEvent>.Accept(new PropletMetadataChanged(c.PropletId, c.Metadata, c.At), new PropletCameOnline(c.PropletId, c.At)),
        (RegisterProplet c, _) when c.Metadata == state.Metadata => Decision<PropletEvent>.Accept(),
        (RegisterProplet c, _) => Decision<PropletEvent>.Accept(new PropletMetadataChanged(c.PropletId, c.Metadata, c.At)),

        (DeleteProplet, { Deleted: true }) => Decision<PropletEvent>.Accept(),
        (_, { Exists: false } or { Deleted: true }) => Rejection.NotFound($"proplet {command.PropletId} not found"),

        (MarkPropletOffline c, { Offline: false }) => Decision<PropletEvent>.Accept(new PropletWentOffline(c.PropletId, c.Reason, c.At)),
        (MarkPropletOffline, _) => Decision<PropletEvent>.Accept(),

        (MarkPropletOnline c, { Offline: true }) => Decision<PropletEvent>.Accept(new PropletCameOnline(c.PropletId, c.At)),
        (MarkPropletOnline, _) => Decision<PropletEvent>.Accept(),

        (DeleteProplet c, _) when c.RunningTasks > 0 => Rejection.Conflict($"proplet {c.PropletId} has {c.RunningTasks} active tasks"),
        (DeleteProplet c, _) => Decision<PropletEvent>.Accept(new PropletDeleted(c.PropletId, c.At)),

        _ => Rejection.Conflict($"{command.GetType().Name} is not possible for proplet {command.PropletId}"),
    };

    public static PropletState Evolve(PropletState state, PropletEvent @event) => @event switch
    {
        PropletRegistered e => PropletState.Initial with { Exists = true, Id = e.PropletId, Name = e.Name, Metadata = e.Metadata, RegisteredAt = e.RegisteredAt },
        PropletMetadataChanged e => state with { Metadata = e.Metadata },
        PropletWentOffline e => state with { Offline = true, OfflineSince = e.At, LastWentOffline = e.At },
        PropletCameOnline => state with { Offline = false, OfflineSince = null },
        PropletDeleted => state with { Deleted = true },
        _ => state,
    };
}
