using System.Diagnostics.Metrics;
using Marten;
using Marten.Linq.MatchesSql;
using Propeller.Application.Proplets;
using Propeller.Application.Tasks;
using Propeller.Domain.Proplets;
using Propeller.Domain.Tasks;
using Propeller.Infrastructure.MartenStore;
using Propeller.Infrastructure.Mqtt;
using Propeller.Infrastructure.Wolverine;
using Propeller.Manager.Tasks;
using Wolverine;
using TaskStatus = Propeller.Domain.Tasks.TaskStatus;

namespace Propeller.Manager.Wolverine;

/// <summary>
/// A proplet's report of the tasks it holds (our proplet's discovery, <c>tasks</c>: on every connect, once more shortly
/// after a connect that found no session, and every five minutes): <paramref name="Held"/> maps each task to the run
/// (attempt and dispatch) its start named (null parts: none); <paramref name="SessionPresent"/> on the report a proplet
/// sends as it connects (our proplet), whether the broker kept its session. Invoked by the inbound handler; committed
/// before the discovery is acknowledged.
/// </summary>
public sealed record ReconcileHeldTasks(string PropletId, IReadOnlyDictionary<Guid, HeldRun> Held, DateTimeOffset ReportedAt, bool? SessionPresent = null);

/// <summary>Reconciles <see cref="ReconcileHeldTasks"/> in Wolverine's transaction (<see cref="HeldTasksReconciler"/>).</summary>
public static class ReconcileHeldTasksHandler
{
    public static async Task<OutgoingMessages> HandleAsync(ReconcileHeldTasks message, IDocumentSession session, HeldTasksReconciler reconciler, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(reconciler);
        var outgoing = new OutgoingMessages();
        await reconciler.ReconcileAsync(session, message, outgoing, cancellationToken);
        return outgoing;
    }
}

/// <summary>
/// What a proplet holds against what the manager has recorded (docs/edge.md "What a proplet holds"). A start published
/// while the proplet had no session at the broker (a proplet with PROPLET_MQTT_CLEAN_SESSION=true, the original's
/// default, reconnecting after the broker restarted or its link dropped) is dropped by the broker; the proplet heartbeats
/// on, so nothing re-dispatched the task and it stayed Running for ever. Likewise a lost stop left the task running
/// there. So:
/// <list type="bullet">
/// <item>a task the manager has running on the proplet, dispatched at least <see cref="ResendAfter"/> before the
/// report, that the proplet does not hold at that attempt and dispatch (a run of an earlier dispatch counts as not
/// held: its result would be ignored), gets its start again (<c>task.start_resent.v1</c> on its
/// stream, and the same start message, in one transaction); after <see cref="MaxResends"/> of them for one dispatch it is
/// re-dispatched instead (<c>task.redispatch_requested.v1</c>, or failed at the limit). So is a completed task whose
/// run goes on there (a daemon, a served HTTP proxy: TaskState.IsServing) when the proplet lost it (it restarted): the
/// start makes it run again, and its "started" result is recorded (<c>task.serving_resumed.v1</c>: the sends are
/// forgiven, so a daemon whose proplet restarts now and then is not re-dispatched for it). Our proplet never runs one run twice: a start of a run that
/// is running or finished there is dropped (attempt and dispatch, <c>StartMessage.Dispatch</c>), so a start that was in
/// flight when the report was taken costs nothing but the message;</item>
/// <item>a held task the manager has stopped, failed or deleted at that attempt, or moved on from to a later attempt, gets
/// that attempt's stop again (logged; no event: nothing about the task changes). A held run the task was re-dispatched
/// away from since (same attempt, an earlier dispatch: the proplet was taken for gone and came back) gets the stop of
/// that dispatch alone, which leaves a later dispatch of the attempt running, here or elsewhere (a daemon or a served
/// proxy ran on there for ever).</item>
/// </list>
/// A task the manager does not know is left alone (another manager's, on a shared broker).
/// </summary>
public sealed partial class HeldTasksReconciler(WolverinePlacement placement, ITaskQueries tasks, StopMessages stops, TimeProvider time, ILogger<HeldTasksReconciler> logger)
{
    private static readonly Counter<long> Resent = ManagerMeter.Meter.CreateCounter<long>(
        "manager_held_tasks_resent", "{message}", "Starts and stops sent again because a proplet's report of what it holds lacked or still held the task (kind: start, stop)");

    /// <summary>
    /// How long before the report a task must have been dispatched for its absence to count: a start on time reaches the
    /// proplet within milliseconds; one dispatched closer to the report may be on its way (the proplet's second report,
    /// shortly after a connect without a session, covers those).
    /// </summary>
    internal TimeSpan ResendAfter { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>The least time between two sends of one dispatch's start (<see cref="TaskCommand.ResendStart"/>: every node
    /// handles each report).</summary>
    internal TimeSpan ResendInterval { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// How often one dispatch's start is sent again before the proplet is taken not to run it (it drops it, or its
    /// result cannot reach the manager): the task is then re-dispatched, as when its proplet goes offline, and fails at
    /// MANAGER_MAX_REDISPATCHES instead of being sent again at every report for ever.
    /// </summary>
    internal const int MaxResends = 3;

    public async Task ReconcileAsync(IDocumentSession session, ReconcileHeldTasks report, OutgoingMessages outgoing, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(session);
        ArgumentNullException.ThrowIfNull(report);
        ArgumentNullException.ThrowIfNull(outgoing);
        if (placement.Scheduling is not { } scheduling)
        {
            return; // no broker: nothing was sent, nothing to send again
        }

        // A Last Will's re-dispatch, still to come, leaves this proplet's tasks to this reconciliation (RedispatchTasksOf).
        var key = WolverineStreams.Key(PropletAggregate.StreamId(new PropletId(report.PropletId)));
        // Beside the proplet's document, not in it: a proplet event committed meanwhile wrote the document back whole
        // with the value it had loaded, and the proplet's tasks were re-dispatched while it still ran them (ADR 0010).
        PropletLiveness.RecordHeldReport(session, key, report.ReportedAt);

        // Connected without a session after it went away (restarted, or its link dropped): what was dispatched to it before
        // then is not on its way (the broker dropped it), so its absence counts at once, not only after ResendAfter.
        var lostBefore = report.SessionPresent == false
            ? (await session.LoadAsync<PropletDocument>(key, cancellationToken))?.State.LastWentOffline
            : null;
        await ResendStartsAsync(session, scheduling, report, lostBefore, outgoing, cancellationToken);
        await ResendStopsAsync(session, report, outgoing, cancellationToken);
    }

    private async Task ResendStartsAsync(
        IDocumentSession session, WolverineScheduling scheduling, ReconcileHeldTasks report, DateTimeOffset? lostBefore, OutgoingMessages outgoing, CancellationToken cancellationToken)
    {
        var lost = (await tasks.ListRunsOnAsync(report.PropletId, cancellationToken))
            .Where(t => Lacks(report, t, lostBefore))
            .Select(t => t.Id.Value)
            .ToList();
        if (lost.Count == 0)
        {
            return;
        }

        var listener = scheduling.Attach(session);
        var now = time.GetUtcNow();
        var reason = $"proplet {report.PropletId} does not hold it (its start was lost)";
        var redispatched = new List<Guid>();
        foreach (var stream in await WolverineStreams.FetchForWritingAsync<TaskState>(session, lost, cancellationToken))
        {
            if (stream.Aggregate is not { RunGoesOn: true } state || !Lacks(report, state, lostBefore))
            {
                continue; // moved on since the view was read (ended, re-dispatched, dispatched again just now)
            }

            var decision = TaskDecider.Decide(
                new TaskCommand.ResendStart(state.Id, report.PropletId, state.Attempt, reason, MaxResends, scheduling.Planner.Options.MaxRedispatches, ResendInterval, now,
                    scheduling.Planner.Options.RedispatchResetAfter), state);
            if (decision.Rejection is not null || decision.Events.Count == 0)
            {
                continue;
            }

            var after = decision.Events.Aggregate(state, TaskDecider.Evolve);
            listener.Append(stream, TaskAggregate.StreamId(state.Id), decision.Events, after, scheduling.SystemMetadata(state.Id.ToString()));
            switch (decision.Events[^1])
            {
                case TaskEvent.TaskStartResent:
                    outgoing.Add(scheduling.StartOf(state, state.Id.ToString()));
                    Resent.Add(1, new KeyValuePair<string, object?>("kind", "start"));
                    LogStartResent(logger, state.Id.ToString(), state.Attempt, report.PropletId);
                    break;
                case TaskEvent.TaskRedispatchRequested:
                    redispatched.Add(state.Id.Value);
                    LogGivenUp(logger, state.Id.ToString(), report.PropletId, MaxResends);
                    break;
                default:
                    LogGivenUp(logger, state.Id.ToString(), report.PropletId, MaxResends); // failed at the re-dispatch limit
                    break;
            }
        }

        if (redispatched.Count > 0)
        {
            outgoing.Add(new PlaceTasks([.. redispatched]));
        }
    }

    private async Task ResendStopsAsync(IDocumentSession session, ReconcileHeldTasks report, OutgoingMessages outgoing, CancellationToken cancellationToken)
    {
        var runs = report.Held.Where(p => p.Value.Attempt is not null).ToDictionary(p => new TaskId(p.Key), p => p.Value);
        if (runs.Count == 0)
        {
            return;
        }

        var ids = runs.Keys.Select(k => k.Value).ToArray();
        foreach (var state in await session.Query<TaskState>().Where(x => x.MatchesSql("d.id = any(?)", ids)).ToListAsync(cancellationToken))
        {
            var (attempt, dispatch) = (runs[state.Id].Attempt!.Value, runs[state.Id].Dispatch);
            var ended = state.Deleted
                        || state.Attempt > attempt
                        || (state.Attempt == attempt && state.Status is TaskStatus.Interrupted or TaskStatus.Failed);

            // Re-dispatched since that run began (the proplet was taken for gone, then came back): the attempt is the same,
            // its dispatch count is past the run's. The stop names the dispatch, so a later dispatch of the attempt
            // elsewhere is left alone. Not when the task runs on this proplet again: its start is sent again instead
            // (Lacks), and the proplet takes the later dispatch for the run it holds; stopped, that run would end the task.
            var superseded = state.Attempt == attempt && dispatch < state.Dispatch
                             && !(state.Status == TaskStatus.Running && state.PropletId == report.PropletId);
            if (!state.Exists || !(ended || superseded))
            {
                continue;
            }

            outgoing.AddRange(stops.ForRun(state, report.PropletId, attempt, superseded && !ended ? dispatch : null).Select(PublishToBroker.From));
            Resent.Add(1, new KeyValuePair<string, object?>("kind", "stop"));
            var now = state.Deleted ? "deleted" : superseded && !ended ? $"dispatched again since (dispatch {state.Dispatch})" : $"{state.Status} at attempt {state.Attempt}";
            LogStopResent(logger, state.Id.ToString(), attempt, report.PropletId, now);
        }
    }

    /// <summary>Whether <paramref name="task"/>, running on the reporting proplet, was dispatched long enough before the
    /// report for its start to have arrived (or before <paramref name="lostBefore"/>: the proplet's connection without a
    /// session since cannot be receiving it), and the report lacks its current attempt and dispatch (one held without
    /// an attempt or dispatch counts as held). A run of an earlier dispatch (the task was dispatched again to this
    /// proplet, whose start of it was lost) is lacking: its result would be ignored, and the proplet takes the start of
    /// the later dispatch for the run it holds (TaskRunner's admission).</summary>
    private bool Lacks(ReconcileHeldTasks report, TaskState task, DateTimeOffset? lostBefore) =>
        task.PropletId == report.PropletId
        && (task.StartTime <= report.ReportedAt - ResendAfter || task.StartTime < lostBefore)
        && !(report.Held.TryGetValue(task.Id.Value, out var run)
             && (run.Attempt is null || (run.Attempt == task.Attempt && (run.Dispatch is null || run.Dispatch >= task.Dispatch))));

    [LoggerMessage(EventId = 6103, Level = LogLevel.Warning, Message = "Task {TaskId} (attempt {Attempt}) runs on proplet {PropletId} by the manager's record, but the proplet does not hold it: its start is sent again")]
    private static partial void LogStartResent(ILogger logger, string taskId, int attempt, string propletId);

    [LoggerMessage(EventId = 6105, Level = LogLevel.Warning, Message = "Task {TaskId}'s start was sent again {Times} times and proplet {PropletId} still does not hold it: re-dispatching it (or failing it at the limit)")]
    private static partial void LogGivenUp(ILogger logger, string taskId, string propletId, int times);

    [LoggerMessage(EventId = 6104, Level = LogLevel.Warning, Message = "Proplet {PropletId} still holds task {TaskId} (attempt {Attempt}), which is {Now}: its stop is sent again")]
    private static partial void LogStopResent(ILogger logger, string taskId, int attempt, string propletId, string now);
}
