using Marten;
using Propeller.Application.Proplets;
using Propeller.Domain.Proplets;
using Propeller.Infrastructure.MartenStore;
using Propeller.Infrastructure.Wolverine;
using Wolverine;

namespace Propeller.Manager.Wolverine;

/// <summary>
/// Placement, the waiting-task sweep and proplet liveness as Wolverine handlers (ADR 0014, decision 13) on the durable
/// local queue "scheduling": each runs in Wolverine's transaction (AutoApplyTransactions on the Marten session), so its
/// events, timer documents and cascaded messages (start messages to "broker", scheduled checks) commit together or not
/// at all; a lost race on a stream throws Marten's ConcurrencyException and the retry policy decides again. No loop:
/// what waits is placed when something changes (a proplet discovered or back online) and by a scheduled sweep.
/// </summary>
public static class SchedulingHandler
{
    /// <summary>Places the tasks that still wait (a start with plugins in placement, a re-dispatch) in one transaction.</summary>
    public static async Task<OutgoingMessages> HandleAsync(PlaceTasks message, IDocumentSession session, WolverineScheduling scheduling, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(message);
        ArgumentNullException.ThrowIfNull(scheduling);
        var outgoing = new OutgoingMessages();
        var waiting = await scheduling.PlaceAsync(session, scheduling.Attach(session), message.TaskIds, outgoing, cancellationToken);
        if (waiting > 0)
        {
            await scheduling.EnsureSweepAsync(session, outgoing, waiting: true, cancellationToken);
        }

        return outgoing;
    }

    /// <summary>A further page of a sweep's round: placed as <see cref="PlaceTasks"/> is.</summary>
    public static async Task<OutgoingMessages> HandleAsync(PlaceSweepPage message, IDocumentSession session, WolverineScheduling scheduling, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(message);
        ArgumentNullException.ThrowIfNull(scheduling);
        if (scheduling.SweepPageHook is { } hook)
        {
            await hook(cancellationToken);
        }

        return await HandleAsync(new PlaceTasks(message.TaskIds), session, scheduling, cancellationToken);
    }

    /// <summary>
    /// A sweep: a link of the scheduled chain (dropped unless its token is the stored one; it schedules the next link
    /// sooner while tasks wait) or one sent by an event (it makes sure a chain runs).
    /// </summary>
    public static async Task<OutgoingMessages> HandleAsync(SweepWaitingTasks message, IDocumentSession session, WolverineScheduling scheduling, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(message);
        ArgumentNullException.ThrowIfNull(session);
        ArgumentNullException.ThrowIfNull(scheduling);
        var outgoing = new OutgoingMessages();
        SchedulerTimer? timer = null;
        if (message.Token is { } token)
        {
            timer = await session.LoadAsync<SchedulerTimer>(WolverineScheduling.SweepTimerId, cancellationToken);
            if (timer is null || timer.Token != token)
            {
                return outgoing; // a replaced chain's message: another chain runs
            }
        }

        var waiting = await scheduling.SweepAsync(session, scheduling.Attach(session), outgoing, cancellationToken);
        if (timer is not null)
        {
            await scheduling.ContinueChainAsync(session, outgoing, timer, waiting, cancellationToken);
        }
        else
        {
            await scheduling.EnsureSweepAsync(session, outgoing, waiting, cancellationToken);
        }

        return outgoing;
    }

    /// <summary>The periodic check of the sweep chain (<see cref="SweepChainWatch"/>): replaces it if it is lost.</summary>
    public static async Task<OutgoingMessages> HandleAsync(KeepSweepChain message, IDocumentSession session, WolverineScheduling scheduling, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(message);
        ArgumentNullException.ThrowIfNull(session);
        ArgumentNullException.ThrowIfNull(scheduling);
        var outgoing = new OutgoingMessages();
        await scheduling.KeepChainAsync(session, outgoing, cancellationToken);
        return outgoing;
    }

    /// <summary>A proplet's liveness timer fired: dropped unless its token is the stored one.</summary>
    public static async Task<OutgoingMessages> HandleAsync(CheckLiveness message, IDocumentSession session, WolverineScheduling scheduling, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(message);
        ArgumentNullException.ThrowIfNull(session);
        ArgumentNullException.ThrowIfNull(scheduling);
        var outgoing = new OutgoingMessages();
        var timer = await session.LoadAsync<SchedulerTimer>(SchedulerTimer.Liveness(message.PropletId), cancellationToken);
        if (timer is not null && timer.Token == message.Token)
        {
            await scheduling.CheckLivenessAsync(session, scheduling.Attach(session), timer, message.PropletId, outgoing, cancellationToken);
        }

        return outgoing;
    }

    /// <summary>
    /// A proplet went offline: its running tasks are re-dispatched (or failed at the limit) and placed again, and the
    /// sweep looks at it again soon (a dispatch that raced the re-dispatch). A message handled late (retried, replayed
    /// from the dead letters) may find the proplet online again, running tasks given to it since: those are left alone;
    /// only what it had when it went away moves (all of it for a message without the time, from before the field). One
    /// that came back and reported what it holds since it went away (a Last Will's re-dispatch waits
    /// MANAGER_OFFLINE_REDISPATCH_DELAY: a link that dropped and came straight back) keeps its tasks: that report's
    /// reconciliation sent again what it lost, and what it holds runs on.
    /// </summary>
    public static async Task<OutgoingMessages> HandleAsync(RedispatchTasksOf message, IDocumentSession session, WolverineScheduling scheduling, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(message);
        ArgumentNullException.ThrowIfNull(session);
        ArgumentNullException.ThrowIfNull(scheduling);
        var outgoing = new OutgoingMessages();
        var key = WolverineStreams.Key(PropletAggregate.StreamId(new PropletId(message.PropletId)));
        var proplet = await session.LoadAsync<PropletDocument>(key, cancellationToken);
        if (proplet is { State: { Exists: true, Deleted: false, Offline: false } } && message.OfflineAt is { } offlineAt
            && (await PropletLiveness.LoadAsync(session, key, cancellationToken))?.HeldReportedAt is { } reported && reported > offlineAt)
        {
            scheduling.KeptOnReturn(message.PropletId, reported);
            return outgoing;
        }

        DateTimeOffset? dispatchedBy = proplet is { State: { Exists: true, Deleted: false, Offline: false } } ? message.OfflineAt ?? DateTimeOffset.MinValue : null;
        await scheduling.RedispatchAsync(session, scheduling.Attach(session), message.PropletId, message.Reason, outgoing, cancellationToken, dispatchedBy);
        await scheduling.RecheckSoonAsync(session, outgoing, cancellationToken);
        return outgoing;
    }
}
