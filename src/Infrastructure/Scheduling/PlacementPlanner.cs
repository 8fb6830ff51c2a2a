using Microsoft.Extensions.Options;
using Propeller.Application.Messaging;
using Propeller.Application.Plugins;
using Propeller.Application.Proplets;
using Propeller.Application.Scheduling;
using Propeller.Application.Tasks;
using Propeller.Domain.Common;
using Propeller.Domain.Tasks;
using static Propeller.Domain.Tasks.TaskCommand;

namespace Propeller.Infrastructure.Scheduling;

/// <summary>
/// What placement decides for one waiting task, before anything is appended: <see cref="DispatchTask"/> (with the
/// environment a plugin added), <see cref="DeferDispatch"/> with the wait reason, or <see cref="BlockDispatch"/> when a
/// plugin refused; the plugin decisions go into the events' metadata.
/// </summary>
public sealed record PlannedPlacement(TaskState Task, TaskCommand Command, IReadOnlyList<PluginDecision> Decisions);

/// <summary>
/// Placement without a store of its own (the Wolverine pipeline's handlers, ADR 0014, decide and append what it plans):
/// the policy over live proplets (<see cref="PropletSelector"/>, <see cref="SchedulerOptions"/>), broadcast tasks, and
/// the plugin hooks <c>on_before_proplet_select</c> (spec §7.7: refuse, or narrow the candidates by tags and memory)
/// and <c>on_before_dispatch</c> (§7.8: refuse the chosen proplet, or add environment). One per node: the round-robin
/// positions are kept between calls, under a lock; the load counts are the task view's plus this node's dispatches not
/// committed yet (<see cref="PlacementsInFlight"/>).
/// </summary>
public sealed class PlacementPlanner(
    IPropletRegistry proplets, IOptions<SchedulerOptions> options, TimeProvider time, IPluginGate? plugins = null, PlacementsInFlight? inFlight = null) : IDisposable
{
    /// <summary>How many <c>on_before_proplet_select</c> calls of one round run at once (a plugin's instance pool has at
    /// least four).</summary>
    private const int SelectHookConcurrency = 4;

    /// <summary>How old the proplet snapshot used for placement at the start may get before it is read again.</summary>
    private static readonly TimeSpan SnapshotAge = TimeSpan.FromMilliseconds(250);

    private readonly IPluginGate _plugins = plugins ?? AllowAllPluginGate.Instance;
    private readonly SemaphoreSlim _placing = new(1, 1);
    private readonly RoundRobinCursors _roundRobin = new();
    private readonly PlacementsInFlight _inFlight = inFlight ?? new PlacementsInFlight(time);
    private Snapshot? _snapshot;

    public SchedulerOptions Options { get; } = options.Value;

    /// <summary>Plugins take part in placement: their hooks run in the placement handler, not in the start.</summary>
    public bool PluginsTakePart => _plugins is not AllowAllPluginGate;

    /// <summary>
    /// Placement at the start (no plugins take part, else null): a proplet from a snapshot of at most
    /// <see cref="SnapshotAge"/> (read again before deciding that the task waits), or the reason it waits.
    /// </summary>
    public async ValueTask<PlannedPlacement?> PlanAtOnceAsync(TaskState scheduled, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(scheduled);
        if (PluginsTakePart || scheduled.Spec is not { } spec)
        {
            return null;
        }

        var now = time.GetUtcNow();
        var request = new PlacementRequest(spec.PropletId, new HashSet<string>(), 0, spec.Priority);
        await _placing.WaitAsync(cancellationToken);
        try
        {
            var fresh = false;
            if (_snapshot is null || now - _snapshot.TakenAt > SnapshotAge)
            {
                _snapshot = new Snapshot(now, await ReadCandidatesAsync(now, cancellationToken));
                fresh = true;
            }

            var placement = Place(_snapshot.Candidates);
            if (placement.PropletId is null && !fresh)
            {
                // A proplet may have appeared since the snapshot: waiting is decided on a fresh read.
                _snapshot = new Snapshot(now, await ReadCandidatesAsync(now, cancellationToken));
                placement = Place(_snapshot.Candidates);
            }

            var plan = new PlannedPlacement(scheduled, Command(scheduled.Id, placement, null, now), []);
            InFlight(plan);
            return plan;
        }
        finally
        {
            _placing.Release();
        }

        Placement Place(List<PropletCandidate> candidates) => spec.Broadcast ? PropletSelector.Broadcast(candidates) : Select(request, candidates);
    }

    /// <summary>
    /// Plans the waiting tasks in order on one fresh read of the proplets, taken under the placement lock (load counts
    /// include this node's dispatches not committed yet and what this round placed), running the plugin hooks for each
    /// task that is not broadcast: <c>on_before_proplet_select</c> before the lock (<see cref="SelectHooksAsync"/>),
    /// <c>on_before_dispatch</c> under it (it is asked about the proplet chosen on the round's counts, and a refusal takes
    /// the task off that proplet's count before the round's next task is placed).
    /// </summary>
    public async Task<IReadOnlyList<PlannedPlacement>> PlanAsync(IReadOnlyList<TaskState> waiting, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(waiting);
        if (waiting.Count == 0)
        {
            return [];
        }

        var selections = PluginsTakePart ? await SelectHooksAsync(waiting, cancellationToken) : null;
        var planned = new List<PlannedPlacement>(waiting.Count);
        await _placing.WaitAsync(cancellationToken);
        try
        {
            // Read under the lock: a round read before it saw none of the dispatches of the round that held it.
            var now = time.GetUtcNow();
            var views = (await proplets.ListAsync(cancellationToken)).ToDictionary(p => p.Id.Value, StringComparer.Ordinal);
            var candidates = Candidates(views.Values, now);
            _inFlight.CountIn(candidates);
            for (var i = 0; i < waiting.Count; i++)
            {
                var plan = await PlanOneAsync(waiting[i], selections?[i], views, candidates, now, cancellationToken);
                InFlight(plan);
                planned.Add(plan);
            }

            // The start path's snapshot holds none of this round's dispatches: read again (with them in flight) next time.
            _snapshot = null;
        }
        finally
        {
            _placing.Release();
        }

        return planned;
    }

    public void Dispose() => _placing.Dispose();

    /// <summary>The start message for a task that has just been dispatched (spec propeller-edge.md §1.8).</summary>
    public OutgoingMessage StartMessage(TaskState dispatched, string? correlationId) => StartMessages.For(dispatched, Options.BaseTopic, correlationId);

    /// <summary>
    /// <c>on_before_proplet_select</c> (spec §7.7) for the round's tasks that are not broadcast, <see cref="SelectHookConcurrency"/>
    /// at a time, before the placement lock: it depends on the task alone. Under the lock, a select hook running to its
    /// time limit (1 s by default) held every round and start placement of the node for that long, per task of the
    /// round (up to 200).
    /// </summary>
    private async Task<SelectOutcome?[]> SelectHooksAsync(IReadOnlyList<TaskState> waiting, CancellationToken cancellationToken)
    {
        var outcomes = new SelectOutcome?[waiting.Count];
        var parallel = new ParallelOptions { MaxDegreeOfParallelism = SelectHookConcurrency, CancellationToken = cancellationToken };
        await Parallel.ForEachAsync(Enumerable.Range(0, waiting.Count), parallel, async (i, token) =>
        {
            var task = waiting[i];
            if (task.Spec is { Broadcast: false })
            {
                outcomes[i] = await _plugins.BeforePropletSelectAsync(new PluginAuthContext(task.RequestedBy, PluginAction.None), PluginTaskInfos.From(task)!, token);
            }
        });
        return outcomes;
    }

    private async Task<PlannedPlacement> PlanOneAsync(
        TaskState task, SelectOutcome? selected, Dictionary<string, PropletView> views, List<PropletCandidate> candidates, DateTimeOffset now, CancellationToken cancellationToken)
    {
        var spec = task.Spec!;
        if (spec.Broadcast)
        {
            return new PlannedPlacement(task, Command(task.Id, PropletSelector.Broadcast(candidates), null, now), []);
        }

        var request = new PlacementRequest(spec.PropletId, new HashSet<string>(), 0, spec.Priority);
        IReadOnlyList<PluginDecision> decisions = [];
        var context = new PluginAuthContext(task.RequestedBy, PluginAction.None);
        if (PluginsTakePart)
        {
            // on_before_proplet_select (spec §7.7), asked before the lock: may refuse, or narrow the candidates.
            var select = selected ?? await _plugins.BeforePropletSelectAsync(context, PluginTaskInfos.From(task)!, cancellationToken);
            decisions = select.Decisions;
            if (!select.Allowed)
            {
                return new PlannedPlacement(task, new BlockDispatch(task.Id, Blocked("proplet selection blocked by plugin", select.Reason), now), decisions);
            }

            request = request with { RequiredTags = select.RequiredTags.ToHashSet(StringComparer.Ordinal), MinMemoryBytes = select.MinMemoryBytes };
        }

        var placement = Select(request, candidates);
        if (placement.PropletId is not { } propletId || !PluginsTakePart)
        {
            return new PlannedPlacement(task, Command(task.Id, placement, null, now), decisions);
        }

        // on_before_dispatch (spec §7.8): may refuse the chosen proplet, or add environment for it.
        var view = views.GetValueOrDefault(propletId);
        var proplet = new PluginPropletInfo(propletId, view?.Name ?? "", view is null ? [] : [.. view.Metadata.Tags], view?.Metadata.TotalMemoryBytes ?? 0, view?.Metadata.Location);
        var dispatch = await _plugins.BeforeDispatchAsync(context, PluginTaskInfos.From(task)!, proplet, cancellationToken);
        decisions = [.. decisions, .. dispatch.Decisions];
        if (!dispatch.Allowed)
        {
            // Not dispatched: the task counted in on the proplet by Select comes off again (it steered the round's later
            // tasks away from a proplet that got nothing).
            Uncount(candidates, propletId);
            return new PlannedPlacement(task, new BlockDispatch(task.Id, Blocked("dispatch blocked by plugin", dispatch.Reason), now), decisions);
        }

        EquatableMap? extraEnv = dispatch.ExtraEnv.Count > 0 ? new EquatableMap(dispatch.ExtraEnv) : null;
        return new PlannedPlacement(task, Command(task.Id, placement, extraEnv, now), decisions);
    }

    private async Task<List<PropletCandidate>> ReadCandidatesAsync(DateTimeOffset now, CancellationToken cancellationToken)
    {
        var candidates = Candidates(await proplets.ListAsync(cancellationToken), now);
        _inFlight.CountIn(candidates);
        return candidates;
    }

    /// <summary>A dispatch onto one proplet counts there until its transaction commits (broadcast tasks count nowhere).</summary>
    private void InFlight(PlannedPlacement plan)
    {
        if (plan.Command is DispatchTask { PropletId: var propletId } && propletId != TaskSpec.BroadcastTarget)
        {
            _inFlight.Add(TaskAggregate.StreamId(plan.Task.Id), propletId);
        }
    }

    private static TaskCommand Command(TaskId id, Placement placement, EquatableMap? extraEnv, DateTimeOffset now) =>
        placement.PropletId is { } propletId ? new DispatchTask(id, propletId, now, extraEnv) : new DeferDispatch(id, placement.WaitReason!, now);

    /// <summary>The task's error: <paramref name="prefix"/> and the plugin's reason, or the prefix alone when the gate gave
    /// it as the reason (a deny without one): it read "dispatch blocked by plugin: dispatch blocked by plugin".</summary>
    private static string Blocked(string prefix, string? reason) =>
        reason is not { Length: > 0 } || reason == prefix ? prefix : $"{prefix}: {reason}";

    /// <summary>Under <see cref="_placing"/>: chooses by policy and counts the task in on the chosen candidate.</summary>
    private Placement Select(PlacementRequest request, List<PropletCandidate> candidates) => SelectAndCount(Options.Policy, request, candidates, _roundRobin);

    private List<PropletCandidate> Candidates(IEnumerable<PropletView> views, DateTimeOffset now) => CandidatesOf(views, now, Options.LivenessWindow);

    /// <summary>Chooses by <paramref name="policy"/> and counts the task in on the chosen candidate (the caller holds the placement lock).</summary>
    internal static Placement SelectAndCount(SchedulingPolicy policy, PlacementRequest request, List<PropletCandidate> candidates, RoundRobinCursors roundRobin)
    {
        var placement = PropletSelector.Select(policy, request, candidates, roundRobin);
        if (placement.PropletId is { } chosen)
        {
            Count(candidates, chosen, +1);
        }

        return placement;
    }

    /// <summary>Takes off the task <see cref="SelectAndCount"/> counted in on <paramref name="propletId"/> (the caller holds the placement lock).</summary>
    internal static void Uncount(List<PropletCandidate> candidates, string propletId) => Count(candidates, propletId, -1);

    /// <summary>Adds <paramref name="by"/> to the running tasks of <paramref name="propletId"/> among <paramref name="candidates"/> (never below zero).</summary>
    internal static void Count(List<PropletCandidate> candidates, string propletId, int by)
    {
        var index = candidates.FindIndex(c => c.Id == propletId);
        if (index >= 0)
        {
            candidates[index] = candidates[index] with { RunningTasks = Math.Max(0, candidates[index].RunningTasks + by) };
        }
    }

    /// <summary>The proplets as candidates: alive within <paramref name="window"/> of <paramref name="now"/>, their load, tags and memory.</summary>
    internal static List<PropletCandidate> CandidatesOf(IEnumerable<PropletView> views, DateTimeOffset now, TimeSpan window) =>
        [.. views.Select(p => new PropletCandidate(p.Id.Value, p.IsAlive(now, window), p.RunningTasks, p.Metadata.Tags.ToHashSet(StringComparer.Ordinal), p.Metadata.TotalMemoryBytes))];

    private sealed record Snapshot(DateTimeOffset TakenAt, List<PropletCandidate> Candidates);
}
