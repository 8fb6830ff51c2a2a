namespace Propeller.Manager.Wolverine;

/// <summary>
/// Place these tasks (those still waiting for a proplet) in one transaction: cascaded by a start when plugins take
/// part in placement, and after a re-dispatch. Durable local queue "scheduling" (ADR 0014, decision 13).
/// </summary>
public sealed record PlaceTasks(Guid[] TaskIds);

/// <summary>
/// A further page of a sweep's round (<see cref="WolverineScheduling.SweepAsync"/>), placed as <see cref="PlaceTasks"/>
/// is; its own type so that a sweep can tell whether the pages of the round before are still queued.
/// </summary>
public sealed record PlaceSweepPage(Guid[] TaskIds);

/// <summary>
/// Look at the waiting tasks (and at proplets whose tasks need a new home) and place what can be placed. With a token
/// it is a link of the scheduled sweep chain and is dropped unless the token is the one stored in the
/// <see cref="SchedulerTimer"/> "sweep" (so several nodes and reconnects never multiply the chain); without one it was
/// sent by an event (a proplet discovered, back online or gone offline, the node's start). One sweep pages through
/// every waiting task.
/// </summary>
public sealed record SweepWaitingTasks(Guid? Token);

/// <summary>
/// Make sure the sweep chain is alive: sent by every node each <see cref="Infrastructure.Scheduling.SchedulerOptions.IdleSweepInterval"/>
/// (<see cref="SweepChainWatch"/>), it replaces a chain whose link became a dead letter or was lost, which nothing else
/// would while no proplet event comes (heartbeats raise none). Reads one timer document; places nothing itself.
/// </summary>
public sealed record KeepSweepChain;

/// <summary>A proplet's liveness timer firing; dropped unless <paramref name="Token"/> is the one in its <see cref="SchedulerTimer"/>.</summary>
public sealed record CheckLiveness(string PropletId, Guid Token);

/// <summary>
/// A proplet went offline (Last Will, an offline status, silence) or was deleted: re-dispatch the tasks running on it, or
/// fail them at the limit. <paramref name="OfflineAt"/> is when it was seen gone: a message handled late (retried after
/// a failure, replayed from the dead letters) that finds the proplet back online re-dispatches only the tasks dispatched
/// to it by then, not those it was given since it came back.
/// </summary>
public sealed record RedispatchTasksOf(string PropletId, string Reason, DateTimeOffset? OfflineAt = null);

/// <summary>
/// A timer chain's identity, stored as a Marten document beside the events ("sweep", "liveness:{proplet}"): the token
/// of the one live chain and when its next message is due. A new chain replaces the token, and the old chain's message
/// finds a different token when it fires and stops. Each link stores a new token for its next one too: a link handled
/// twice leaves only the last writer's next link (with the token it came with, both would pass the check for good).
/// </summary>
public sealed class SchedulerTimer
{
    public string Id { get; set; } = "";

    public Guid Token { get; set; }

    public DateTimeOffset DueAt { get; set; }

    public static string Liveness(string propletId) => "liveness:" + propletId;
}
