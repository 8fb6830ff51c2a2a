using System.Globalization;
using Marten;
using Propeller.Application.EventStore;
using Propeller.Application.Plugins;
using Propeller.Application.Proplets;
using Propeller.Application.Scheduling;
using Propeller.Application.Tasks;
using Propeller.Domain.Proplets;
using Propeller.Domain.Tasks;
using Propeller.Infrastructure.MartenStore;
using Propeller.Infrastructure.Scheduling;
using Propeller.Infrastructure.Wolverine;
using Wolverine;
using TaskStatus = Propeller.Domain.Tasks.TaskStatus;

namespace Propeller.Manager.Wolverine;

/// <summary>
/// Placement, the sweep for waiting tasks and proplet liveness on the Wolverine pipeline (ADR 0014, decision 13), as
/// the scheduling handlers use it: decides with <see cref="TaskDecider"/> and <see cref="PropletDecider"/> on streams
/// fetched for writing in the handler's Marten session, so the events, the timers and the cascaded messages (start
/// messages, scheduled checks) commit in Wolverine's one transaction. One per node; it holds no state but the time the
/// sweep chain was last seen due in the committed timer document (to skip reading it while it is known to be running,
/// when no waiting task depends on it).
/// <para>
/// The sweep lock (issue 15): a link of the chain that found nothing waiting stores its next link an idle interval
/// ahead, while a deferral elsewhere may judge the chain usable from the timer as committed before that: after both
/// commit, the deferred task would wait an idle interval instead of a sweep interval. So the two are serialised by a
/// PostgreSQL advisory lock per schema (<see cref="TransactionLocks"/>), on every node alike: a deferral holds it shared
/// from reading the timer until its transaction (with its deferred task) commits; a link takes it exclusive before its
/// last look at the waiting tasks and holds it until its next link is committed. Whichever commits second sees the
/// other's effect: a link after the deferral lists the deferred task (and stays at the sweep interval), a deferral after
/// the link reads the idle due time and replaces the chain by one a sweep interval ahead. Deferrals do not wait for each
/// other (shared), and the ordinary dispatch path never takes the lock (it defers nothing); a link takes it only when it
/// is about to go idle, not while it places a backlog.
/// </para>
/// </summary>
public sealed partial class WolverineScheduling(
    PlacementPlanner planner, ITaskQueries tasks, IWaitingTaskQueries waitingTasks, IPropletRegistry proplets, CommandSessionServices sessions, HeartbeatWitness witness, TimeProvider time,
    ILogger<WolverineScheduling> logger)
{
    /// <summary>The sweep timer document's id.</summary>
    public const string SweepTimerId = "sweep";

    /// <summary>The advisory lock that serialises a chain going idle with deferrals (see the class remarks).</summary>
    private const string SweepLock = "propeller.sweep_timer";

    private long _sweepDueTicks;

    public PlacementPlanner Planner => planner;

    /// <summary>
    /// For tests: called by a link of the sweep chain after its last look at the waiting tasks (with whether any waits;
    /// under the sweep lock when none did) and before its transaction commits: the point where a deferral would race it.
    /// </summary>
    internal Func<bool, CancellationToken, Task>? LinkLookedHook { get; set; }

    /// <summary>
    /// For tests: called by a deferral after it judged the sweep chain under the sweep lock (with whether it kept the
    /// chain) and before its transaction commits: the other side of the race.
    /// </summary>
    internal Func<bool, CancellationToken, Task>? DeferralJudgedHook { get; set; }

    /// <summary>Tests only: runs before a sweep's further page is placed (holds it queued).</summary>
    internal Func<CancellationToken, Task>? SweepPageHook { get; set; }

    private SchedulerOptions Options => planner.Options;

    /// <summary>A timer due longer ago than this has lost its message (a node died, a dead letter): a new chain replaces it.</summary>
    private static TimeSpan Grace => TimeSpan.FromMinutes(1);

    /// <summary>Metadata for what the scheduler decides on its own: the task as the correlation, the system as the user.</summary>
    public EventMetadata SystemMetadata(string? correlationId, IEnumerable<PluginDecision>? decisions = null, DateTimeOffset? at = null) =>
        new(correlationId, null, PluginAuthContext.SystemUser, at ?? time.GetUtcNow(), decisions is null ? null : PluginTaskInfos.Headers(decisions));

    /// <summary>
    /// Decides <paramref name="plan"/> on <paramref name="state"/>: the events (none when a node before us decided
    /// already), the state after them and, for a dispatch, the start message to cascade.
    /// </summary>
    public (IReadOnlyList<TaskEvent> Events, TaskState State, PublishToBroker? Start) Decide(PlannedPlacement plan, TaskState state, string? correlationId)
    {
        ArgumentNullException.ThrowIfNull(plan);
        ArgumentNullException.ThrowIfNull(state);
        var decision = TaskDecider.Decide(plan.Command, state);
        if (decision.Rejection is not null || decision.Events.Count == 0)
        {
            return ([], state, null);
        }

        var after = decision.Events.Aggregate(state, TaskDecider.Evolve);
        PublishToBroker? start = null;
        switch (decision.Events[^1])
        {
            case TaskEvent.TaskDispatched dispatched:
                start = StartOf(after, correlationId);
                LogDispatched(logger, dispatched.TaskId.ToString(), dispatched.PropletId);
                break;
            case TaskEvent.TaskDispatchDeferred deferred:
                LogWaiting(logger, deferred.TaskId.ToString(), deferred.Reason);
                break;
            case TaskEvent.TaskFailed failed:
                LogBlocked(logger, failed.TaskId.ToString(), failed.Error);
                break;
        }

        return (decision.Events, after, start);
    }

    /// <summary>The start message of <paramref name="task"/>'s current dispatch, for the durable queue "broker": a large
    /// module goes in by reference, put in just before the message is published (ADR 0018).</summary>
    public PublishToBroker StartOf(TaskState task, string? correlationId)
    {
        ArgumentNullException.ThrowIfNull(task);
        return PublishToBroker.From(planner.StartMessage(task, correlationId)) with
        {
            ModuleOf = ModuleReference.IsReference(task.Spec?.File) ? task.Id.Value : null,
        };
    }

    /// <summary>
    /// Places the waiting ones among <paramref name="ids"/> in the handler's session: fetched for writing in one
    /// batch query (expected versions: a node that decided first wins, the retry decides again), planned in the
    /// sweep's order (<see cref="WaitingTaskKey"/>: highest priority first) whatever order the ids come in, appended with
    /// their plugin decisions; returns how many still wait.
    /// </summary>
    public async Task<int> PlaceAsync(IDocumentSession session, CommandSessionListener listener, IEnumerable<Guid> ids, OutgoingMessages outgoing, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(session);
        ArgumentNullException.ThrowIfNull(listener);
        ArgumentNullException.ThrowIfNull(outgoing);
        var streams = await WolverineStreams.FetchForWritingAsync<TaskState>(session, ids.Distinct(), cancellationToken);
        var waiting = streams.Where(s => s.Aggregate is { Status: TaskStatus.Scheduled, Spec: not null }).ToDictionary(s => s.Id);
        if (waiting.Count == 0)
        {
            return 0;
        }

        // One decision time for the round (its events carry it: one timestamp per placement transaction).
        var now = time.GetUtcNow();

        // In the sweep's order (highest priority first), whatever order the ids came in: a re-dispatch lists a proplet's
        // tasks by id, and the planner gives the least loaded proplet to whichever task it plans first.
        var ordered = waiting.Values.Select(s => s.Aggregate!).OrderBy(WaitingTaskKey.Of, WaitingTaskKey.SweepOrder);
        var plans = await planner.PlanAsync([.. ordered], cancellationToken);
        var stillWaiting = 0;
        foreach (var plan in plans)
        {
            var stream = waiting[plan.Task.Id.Value];
            var metadata = SystemMetadata(plan.Task.Id.ToString(), plan.Decisions, now);
            var (events, state, start) = Decide(plan, stream.Aggregate!, metadata.CorrelationId);
            if (state.Status == TaskStatus.Scheduled)
            {
                stillWaiting++;
            }

            if (events.Count == 0)
            {
                continue;
            }

            listener.Append(stream, TaskAggregate.StreamId(plan.Task.Id), events, state, metadata);
            if (start is not null)
            {
                outgoing.Add(start);
            }
        }

        return stillWaiting;
    }

    /// <summary>
    /// Makes sure the sweep chain runs and is due within the interval that fits (<see cref="SchedulerOptions.SweepInterval"/>
    /// while tasks wait, else <see cref="SchedulerOptions.IdleSweepInterval"/>): a chain due late enough, or none, or one
    /// whose message is lost, is replaced by a new token and a scheduled <see cref="SweepWaitingTasks"/> in this
    /// transaction. With <paramref name="waiting"/> (a deferral) it first takes the sweep lock shared, held until this
    /// transaction commits (class remarks); without, while this node knows the chain is due soon enough nothing is read.
    /// </summary>
    public async Task EnsureSweepAsync(IDocumentSession session, OutgoingMessages outgoing, bool waiting, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(session);
        ArgumentNullException.ThrowIfNull(outgoing);
        if (waiting)
        {
            // The remembered due time may be stale exactly in the racy way (a link going idle right now), so a waiting
            // task always reads the timer under the lock.
            await TransactionLocks.TakeSharedAsync(session, SweepLock, cancellationToken);
        }

        var now = time.GetUtcNow();
        var wanted = now + (waiting ? Options.SweepInterval : Options.IdleSweepInterval);
        if (!waiting && Usable(new DateTimeOffset(Interlocked.Read(ref _sweepDueTicks), TimeSpan.Zero), now, wanted))
        {
            return;
        }

        var timer = await session.LoadAsync<SchedulerTimer>(SweepTimerId, cancellationToken);
        var usable = timer is not null && Usable(timer.DueAt, now, wanted);
        if (waiting && DeferralJudgedHook is { } hook)
        {
            await hook(usable, cancellationToken);
        }

        if (usable)
        {
            Interlocked.Exchange(ref _sweepDueTicks, timer!.DueAt.UtcTicks);
            return;
        }

        // A new chain starts soon whatever it is for: two writers that race here (this node's start sweep and a
        // deferral on another node, say) cannot see each other's document, the last one wins, and the loser's link
        // stops when it fires; starting every chain a sweep interval ahead bounds what such a race costs a waiting
        // task to one interval, not the idle one.
        ScheduleSweep(session, outgoing, new SchedulerTimer { Id = SweepTimerId, Token = Guid.NewGuid() }, now + Options.SweepInterval);
    }

    /// <summary>
    /// Replaces the sweep chain if it is lost (<see cref="KeepSweepChain"/>): its timer document missing or due longer
    /// ago than the grace, as <see cref="EnsureSweepAsync"/> judges it, but from the document itself: the due time this
    /// node remembers may be of a chain replaced since (a deferral elsewhere) whose link then died, and would keep it
    /// from looking for up to an idle interval and the grace longer.
    /// </summary>
    public Task KeepChainAsync(IDocumentSession session, OutgoingMessages outgoing, CancellationToken cancellationToken)
    {
        Interlocked.Exchange(ref _sweepDueTicks, 0);
        return EnsureSweepAsync(session, outgoing, waiting: false, cancellationToken);
    }

    /// <summary>The next link of the sweep chain <paramref name="timer"/> (its token), due at <paramref name="dueAt"/>.</summary>
    private static void ScheduleSweep(IDocumentSession session, OutgoingMessages outgoing, SchedulerTimer timer, DateTimeOffset dueAt)
    {
        ArgumentNullException.ThrowIfNull(session);
        ArgumentNullException.ThrowIfNull(outgoing);
        ArgumentNullException.ThrowIfNull(timer);
        timer.DueAt = dueAt;
        session.Store(timer);
        outgoing.Schedule(new SweepWaitingTasks(timer.Token), dueAt);

        // Not remembered here: the transaction may yet roll back (a lost race re-runs the handler). What this node
        // remembers is only what it read, committed, from the timer document.
    }

    /// <summary>
    /// Stores the next link of the chain <paramref name="timer"/> after its sweep: a sweep interval ahead while tasks
    /// wait, an idle interval when none does. Going idle races deferrals, so it is decided again under the sweep lock
    /// taken exclusive (held until this link commits): a task deferred by a transaction that judged the chain usable
    /// before this link went idle is either seen here or, committing after this link, reads the idle due time and
    /// replaces the chain (class remarks). A deferral that replaced the chain before this link took the lock (possible
    /// only for a link firing more than a minute late) committed before it, so this link sees its task, stays at the
    /// sweep interval and overwrites that chain, whose message then stops at the token check.
    /// </summary>
    public async Task ContinueChainAsync(IDocumentSession session, OutgoingMessages outgoing, SchedulerTimer timer, bool waiting, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(session);
        ArgumentNullException.ThrowIfNull(outgoing);
        ArgumentNullException.ThrowIfNull(timer);
        if (!waiting)
        {
            await TransactionLocks.TakeExclusiveAsync(session, SweepLock, cancellationToken);
            // One key from the waiting tasks' index (a document would bring its module out of TOAST for a yes or no).
            waiting = (await waitingTasks.ListWaitingAsync(null, 1, cancellationToken)).Count > 0;
        }

        if (LinkLookedHook is { } hook)
        {
            await hook(waiting, cancellationToken);
        }

        // A fresh token for the next link, not the one this link came with: this link may be handled twice (a stalled
        // node's envelope recovered by a survivor while the node finishes it; a commit that succeeded on the server
        // retried inline after a connection error), and with the same token both handlings' next links would pass the
        // token check, a second chain for good. With a new token per handling only the last writer's link matches the
        // document; the other stops when it fires, and a handling after a commit finds the token changed and stops.
        timer.Token = Guid.NewGuid();
        ScheduleSweep(session, outgoing, timer, NextSweep(waiting));
    }

    private DateTimeOffset NextSweep(bool waiting) => time.GetUtcNow() + (waiting ? Options.SweepInterval : Options.IdleSweepInterval);

    /// <summary>
    /// The sweep: one round over every waiting task, highest priority first (<see cref="WaitingTaskKey"/>), in pages of
    /// <see cref="SchedulerOptions.BatchSize"/>: the first page is placed in this transaction, each further page (read
    /// by keyset, after the last task of the page before) in its own, cascaded as <see cref="PlaceTasks"/>. Then
    /// re-dispatches the tasks of proplets marked offline or deleted (<see cref="PropletFleet.GoneWithRunningTasks"/>),
    /// and the running broadcast tasks once no proplet is left to answer them, and starts the liveness timer of any proplet that has none (a timer lost, proplets from before this pipeline).
    /// Returns whether tasks still wait.
    /// <para>
    /// The round never sends another sweep: a deferral that changes nothing appends nothing, so a sweep that read the
    /// first page again at once (what a full batch did before) found the same tasks, deferred them again and went on
    /// without a pause, and the tasks behind them were never reached. What still waits is looked at again by the next
    /// link of the chain (a sweep interval ahead) or by the next event.
    /// </para>
    /// </summary>
    public async Task<bool> SweepAsync(IDocumentSession session, CommandSessionListener listener, OutgoingMessages outgoing, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(outgoing);
        var page = await waitingTasks.ListWaitingAsync(null, Options.BatchSize, cancellationToken);
        var waiting = page.Count == 0 ? 0 : await PlaceAsync(session, listener, page.Select(t => t.Id.Value), outgoing, cancellationToken);
        if (page.Count >= Options.BatchSize && await SweepPagesQueuedAsync(session, cancellationToken))
        {
            // The round before has not placed all its pages yet (a backlog one sweep interval cannot place): this round
            // stops at its first page, or the queue grew by a round every interval and never drained.
            LogRoundShortened(logger);
            waiting++;
        }
        else
        {
            while (page.Count >= Options.BatchSize)
            {
                page = await waitingTasks.ListWaitingAsync(page[^1], Options.BatchSize, cancellationToken);
                if (page.Count > 0)
                {
                    outgoing.Add(new PlaceSweepPage([.. page.Select(t => t.Id.Value)]));
                    waiting += page.Count;
                }
            }
        }

        var now = time.GetUtcNow();
        var fleet = await proplets.ListFleetAsync(cancellationToken);
        var all = fleet.Proplets;
        // A proplet marked offline has its tasks re-dispatched by a RedispatchTasksOf scheduled OfflineRedispatchDelay after
        // (by its Last Will: a result it sent just before may be on another node; by silence: a sweep interval later still,
        // for a dispatch that raced the first re-dispatch): the sweep catches what that missed, not what it waits for.
        foreach (var proplet in all.Where(p => p.Offline && p.RunningTasks > 0 && !(now - p.OfflineSince < Options.OfflineRedispatchDelay)))
        {
            outgoing.Add(new RedispatchTasksOf(proplet.Id.Value, $"proplet {proplet.Id} went offline", now));
        }

        foreach (var gone in fleet.GoneWithRunningTasks)
        {
            outgoing.Add(new RedispatchTasksOf(gone.Value, $"proplet {gone} was deleted", now));
        }

        // A broadcast task runs on no proplet in particular, so no proplet's going offline re-dispatches it: once no
        // proplet is left that could answer it (each offline, past the delay a Last Will's re-dispatch waits, or never
        // heard from), it is re-dispatched here (counted, failed at the limit) and waits as a broadcast started then
        // would (PropletSelector.Broadcast), broadcast again once a proplet is alive. Else it stayed Running for ever when
        // every proplet went away before one answered, or its start was lost. A run that goes on where its proplet comes
        // back takes the new dispatch (the proplet adopts it); a result of the old one is ignored by its dispatch.
        if (all.All(p => p.Offline ? !(now - p.OfflineSince < Options.OfflineRedispatchDelay) : p.LastAliveAt is null))
        {
            await RedispatchRunsAsync(session, listener, TaskSpec.BroadcastTarget, broadcast: true, "no proplet is online to run the broadcast", outgoing, null, cancellationToken);
        }

        var watched = all.Where(p => !p.Offline).ToList();
        if (watched.Count > 0)
        {
            var timers = (await session.LoadManyAsync<SchedulerTimer>(cancellationToken, watched.Select(p => SchedulerTimer.Liveness(p.Id.Value)))).ToDictionary(t => t.Id, StringComparer.Ordinal);
            foreach (var proplet in watched)
            {
                if (!timers.TryGetValue(SchedulerTimer.Liveness(proplet.Id.Value), out var timer) || timer.DueAt < now - Grace)
                {
                    StartLiveness(session, outgoing, proplet.Id.Value, LivenessDue(proplet, now));
                }
            }
        }

        return waiting > 0;
    }

    /// <summary>Whether a sweep's further page is still queued or being placed (Wolverine's incoming envelopes, any node).</summary>
    private static async Task<bool> SweepPagesQueuedAsync(IDocumentSession session, CancellationToken cancellationToken)
    {
        var table = $"{session.DocumentStore.Options.DatabaseSchemaName}.wolverine_incoming_envelopes";
        var found = await session.QueryAsync<bool>(
            $"select exists (select 1 from {table} where status = 'Incoming' and message_type = ?)", cancellationToken, SweepPageType);
        return found.Count > 0 && found[0];
    }

    private static readonly string SweepPageType = typeof(PlaceSweepPage).FullName!;

    /// <summary>Starts (or restarts, replacing the token) the liveness timer of a proplet: one check due at <paramref name="dueAt"/>.</summary>
    public void StartLiveness(IDocumentSession session, OutgoingMessages outgoing, string propletId, DateTimeOffset dueAt) =>
        ScheduleLiveness(session, outgoing, new SchedulerTimer { Id = SchedulerTimer.Liveness(propletId), Token = Guid.NewGuid() }, propletId, dueAt);

    /// <summary>The liveness timer's next check: the window after the last sign of life (and not in the past).</summary>
    public DateTimeOffset LivenessDue(PropletView proplet, DateTimeOffset now)
    {
        ArgumentNullException.ThrowIfNull(proplet);
        var due = (LastSign(proplet, now) ?? now) + Options.LivenessWindow + TimeSpan.FromMilliseconds(1);
        return due > now ? due : now + Options.LivenessWindow;
    }

    /// <summary>The proplet's last sign of life: its newest recorded heartbeat, and no earlier than when this node could
    /// last begin to hear and record heartbeats (<see cref="HeartbeatWitness"/>).</summary>
    private DateTimeOffset? LastSign(PropletView proplet, DateTimeOffset now) => witness.LastSign(proplet.LastAliveAt, now, Options.ReconnectAllowance);

    /// <summary>
    /// A liveness check that fired with the current token: a proplet alive (or never heard from: as LivenessMonitor,
    /// silence counts only after a first heartbeat) is checked again a window after its last heartbeat; a silent one
    /// is marked offline (PropletWentOffline) and its running tasks re-dispatched in this transaction (and what was
    /// dispatched to it since by a scheduled <see cref="RedispatchTasksOf"/>), and its timer ends (coming back online
    /// starts a new one).
    /// </summary>
    public async Task CheckLivenessAsync(IDocumentSession session, CommandSessionListener listener, SchedulerTimer timer, string propletId, OutgoingMessages outgoing, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(session);
        ArgumentNullException.ThrowIfNull(timer);
        var now = time.GetUtcNow();
        var proplet = await proplets.GetAsync(new PropletId(propletId), cancellationToken);
        if (proplet is null || proplet.Offline)
        {
            EndLiveness(session, timer);
            return;
        }

        var key = WolverineStreams.Key(PropletAggregate.StreamId(proplet.Id));
        if (!Silent(proplet, now))
        {
            ScheduleLiveness(session, outgoing, timer, propletId, LivenessDue(proplet, now));
            return;
        }

        // Silent by a read outside this transaction: judged again from the newest heartbeat as this transaction reads
        // it, its row locked until the commit. A heartbeat recorded after the read (no event: the stream's version does
        // not tell) is seen here; one recorded from now on waits for the commit, then finds the proplet offline and
        // marks it online again (InboundHandler).
        proplet = proplet with { LastAliveAt = await PropletLiveness.LockLastAliveAsync(session, key, cancellationToken) };
        if (!Silent(proplet, now))
        {
            ScheduleLiveness(session, outgoing, timer, propletId, LivenessDue(proplet, now));
            return;
        }

        var reason = $"no heartbeat for {Options.LivenessWindow.TotalSeconds.ToString(CultureInfo.InvariantCulture)} s";
        var stream = await session.Events.FetchForWriting<PropletDocument>(key, cancellationToken);
        var before = stream.Aggregate?.State ?? PropletState.Initial;
        var decision = PropletDecider.Decide(new PropletCommand.MarkPropletOffline(proplet.Id, reason, now), before);
        if (decision.Rejection is null && decision.Events.Count > 0)
        {
            listener.Append(stream, PropletAggregate.StreamId(proplet.Id), decision.Events, decision.Events.Aggregate(before, PropletDecider.Evolve), SystemMetadata(null));
            LogSilent(logger, propletId, reason);
        }

        EndLiveness(session, timer);
        var offline = $"proplet {propletId} went offline";
        await RedispatchAsync(session, listener, propletId, offline, outgoing, cancellationToken);

        // A placement that read the proplet as alive just before (a snapshot up to PlanAtOnceAsync's age) may commit its
        // dispatch after the re-dispatch above looked. The sweep does not catch it soon: it leaves an offline proplet to
        // the re-dispatch a Last Will schedules until OfflineRedispatchDelay has passed since OfflineSince (here this
        // check's time), and a link a sweep interval ahead (what RecheckSoonAsync brought forward) came before that, found
        // nothing waiting and went idle. So this path schedules that re-dispatch too, once the delay and a sweep interval
        // have passed: it moves whatever was dispatched to the proplet since, keeps what a proplet back online reported
        // holding (SchedulingHandler), and then brings the chain forward (a broadcast task left without a live proplet).
        outgoing.Schedule(new RedispatchTasksOf(propletId, offline, now), now + Options.OfflineRedispatchDelay + Options.SweepInterval);
    }

    private bool Silent(PropletView proplet, DateTimeOffset now) => LastSign(proplet, now) is { } last && now - last > Options.LivenessWindow;

    /// <summary>
    /// After a proplet went offline: makes sure the sweep chain is due within a sweep interval, not an idle one. A
    /// placement that read the proplet as alive just before may commit its dispatch after the re-dispatch looked at
    /// the proplet's running tasks; the next link sees that task (offline proplet, running tasks) and re-dispatches it,
    /// instead of leaving it on the dead proplet until the idle sweep.
    /// </summary>
    public Task RecheckSoonAsync(IDocumentSession session, OutgoingMessages outgoing, CancellationToken cancellationToken) =>
        EnsureSweepAsync(session, outgoing, waiting: true, cancellationToken);

    /// <summary>
    /// Re-dispatches every task whose run goes on on <paramref name="propletId"/> (running, or a serving daemon or proxy:
    /// TaskRedispatchRequested, or TaskFailed past
    /// <see cref="SchedulerOptions.MaxRedispatches"/>) and cascades their placement; with <paramref name="dispatchedBy"/>
    /// only those dispatched to it by then.
    /// </summary>
    public Task RedispatchAsync(IDocumentSession session, CommandSessionListener listener, string propletId, string reason, OutgoingMessages outgoing, CancellationToken cancellationToken, DateTimeOffset? dispatchedBy = null) =>
        RedispatchRunsAsync(session, listener, propletId, broadcast: false, reason, outgoing, dispatchedBy, cancellationToken);

    /// <summary>
    /// Re-dispatches the runs listed on <paramref name="propletId"/>: a proplet's (<paramref name="broadcast"/> false),
    /// or the broadcast tasks' (their dispatch names <see cref="TaskSpec.BroadcastTarget"/>, <paramref name="broadcast"/> true).
    /// </summary>
    private async Task RedispatchRunsAsync(IDocumentSession session, CommandSessionListener listener, string propletId, bool broadcast, string reason, OutgoingMessages outgoing, DateTimeOffset? dispatchedBy, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(listener);
        ArgumentNullException.ThrowIfNull(outgoing);
        var running = await tasks.ListRunsOnAsync(propletId, cancellationToken);
        if (running.Count == 0)
        {
            return;
        }

        var now = time.GetUtcNow();
        var redispatched = new List<Guid>();
        // A broadcast task runs on no proplet in particular (its dispatch names the broadcast marker, not a proplet): it
        // moves only when the broadcast runs are asked for (SweepAsync), never with a proplet that was once called so.
        foreach (var stream in await WolverineStreams.FetchForWritingAsync<TaskState>(session, running.Select(t => t.Id.Value), cancellationToken))
        {
            if (stream.Aggregate is not { RunGoesOn: true } state || state.PropletId != propletId || state.StartTime > dispatchedBy || (state.Spec is { Broadcast: true }) != broadcast)
            {
                continue;
            }

            var decision = TaskDecider.Decide(new TaskCommand.RedispatchTask(state.Id, reason, Options.MaxRedispatches, now, Options.RedispatchResetAfter), state);
            if (decision.Rejection is not null || decision.Events.Count == 0)
            {
                continue;
            }

            var after = decision.Events.Aggregate(state, TaskDecider.Evolve);
            listener.Append(stream, TaskAggregate.StreamId(state.Id), decision.Events, after, SystemMetadata(state.Id.ToString()));
            if (broadcast)
            {
                LogBroadcastRedispatch(logger, state.Id.ToString());
            }
            else
            {
                LogRedispatch(logger, state.Id.ToString(), propletId);
            }

            if (after.Status == TaskStatus.Scheduled)
            {
                redispatched.Add(state.Id.Value);
            }
        }

        if (redispatched.Count > 0)
        {
            outgoing.Add(new PlaceTasks([.. redispatched]));
        }
    }

    /// <summary>Logs that a proplet back online, having reported what it holds at <paramref name="reportedAt"/>, keeps its
    /// tasks (SchedulingHandler, RedispatchTasksOf).</summary>
    public void KeptOnReturn(string propletId, DateTimeOffset reportedAt) => LogKept(logger, propletId, reportedAt);

    /// <summary>Attaches the metadata listener to a scheduling handler's session (system user, no correlation of its own).</summary>
    public CommandSessionListener Attach(IDocumentSession session) => sessions.Attach(session, SystemMetadata(null));

    /// <summary>The next check of the liveness chain <paramref name="timer"/>, due at <paramref name="dueAt"/>, under a fresh
    /// token (as the sweep chain's next link, <see cref="ContinueChainAsync"/>): a check handled twice leaves one chain.</summary>
    private static void ScheduleLiveness(IDocumentSession session, OutgoingMessages outgoing, SchedulerTimer timer, string propletId, DateTimeOffset dueAt)
    {
        timer.Token = Guid.NewGuid();
        timer.DueAt = dueAt;
        session.Store(timer);
        outgoing.Schedule(new CheckLiveness(propletId, timer.Token), dueAt);
    }

    /// <summary>Ends the timer that fired, not one a heartbeat started since it was read (the proplet came back online
    /// meanwhile: a plain delete of the id would end the new timer's chain).</summary>
    private static void EndLiveness(IDocumentSession session, SchedulerTimer timer)
    {
        var (id, token) = (timer.Id, timer.Token);
        session.DeleteWhere<SchedulerTimer>(t => t.Id == id && t.Token == token);
    }

    private static bool Usable(DateTimeOffset dueAt, DateTimeOffset now, DateTimeOffset wanted) => dueAt <= wanted && dueAt > now - Grace;

    [LoggerMessage(EventId = 6001, Level = LogLevel.Information, Message = "Task {TaskId} dispatched to proplet {PropletId}")]
    private static partial void LogDispatched(ILogger logger, string taskId, string propletId);

    [LoggerMessage(EventId = 6002, Level = LogLevel.Information, Message = "Task {TaskId} waits: {Reason}")]
    private static partial void LogWaiting(ILogger logger, string taskId, string reason);

    [LoggerMessage(EventId = 6011, Level = LogLevel.Information, Message = "The sweep's round stops at its first page: the round before still has pages queued (a backlog larger than one sweep interval places)")]
    private static partial void LogRoundShortened(ILogger logger);

    [LoggerMessage(EventId = 6010, Level = LogLevel.Warning, Message = "Task {TaskId} not dispatched: {Reason}")]
    private static partial void LogBlocked(ILogger logger, string taskId, string? reason);

    [LoggerMessage(EventId = 6101, Level = LogLevel.Warning, Message = "Proplet {PropletId} marked offline: {Reason}")]
    private static partial void LogSilent(ILogger logger, string propletId, string reason);

    [LoggerMessage(EventId = 6108, Level = LogLevel.Information, Message = "Proplet {PropletId} came back and reported what it holds ({ReportedAt:O}) before its tasks were re-dispatched: they stay there")]
    private static partial void LogKept(ILogger logger, string propletId, DateTimeOffset reportedAt);

    [LoggerMessage(EventId = 6102, Level = LogLevel.Warning, Message = "Task {TaskId} was running on offline proplet {PropletId}: re-dispatching (or failing at the limit)")]
    private static partial void LogRedispatch(ILogger logger, string taskId, string propletId);

    [LoggerMessage(EventId = 6112, Level = LogLevel.Warning, Message = "Broadcast task {TaskId} was running with no proplet left alive to answer it: re-dispatching (or failing at the limit)")]
    private static partial void LogBroadcastRedispatch(ILogger logger, string taskId);
}
