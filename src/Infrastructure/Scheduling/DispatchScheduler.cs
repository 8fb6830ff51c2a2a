using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Npgsql;
using Propeller.Application.Aggregates;
using Propeller.Application.EventStore;
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
/// Places waiting (Scheduled) tasks on proplets, driven by the task and proplet projections: appends TaskDispatched
/// and the start message (outbox) in one transaction, or records why the task waits. Safe on several nodes at once:
/// two schedulers racing for one task both decide on the same stream, and only one dispatch is appended.
/// </summary>
public sealed class DispatchScheduler(
    ITaskQueries tasks, IPropletRegistry proplets, CommandHandler commands, WorkSignals signals, IOptions<SchedulerOptions> options, TimeProvider time,
    ILogger<DispatchScheduler> logger, IPluginGate? plugins = null)
    : BackgroundService, IImmediatePlacement
{
    /// <summary>How old the proplet snapshot used for immediate placement may get before it is read again.</summary>
    private static readonly TimeSpan SnapshotAge = TimeSpan.FromMilliseconds(250);

    private readonly IPluginGate _plugins = plugins ?? AllowAllPluginGate.Instance;

    private readonly SchedulerOptions _options = options.Value;
    private readonly SemaphoreSlim _placing = new(1, 1);
    private long _cursor;
    private Snapshot? _snapshot;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        signals.FastPath = true;
        var fresh = Task.Run(() => FreshStartsAsync(stoppingToken), CancellationToken.None);
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                if (await ScheduleOnceAsync(stoppingToken) == 0)
                {
                    await signals.Scheduler.WaitAsync(_options.PollInterval, stoppingToken);
                }
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                break;
            }
            catch (Exception ex) when (ex is NpgsqlException or TimeoutException or ConcurrencyException)
            {
                SchedulerLog.RoundFailed(logger, ex);
                await Task.Delay(_options.PollInterval * 10, time, stoppingToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            }
        }

        signals.FastPath = false;
        await fresh;
    }

    /// <summary>
    /// The fast path: tasks started on this node are placed as soon as their start is appended, in batches of what
    /// has arrived, without a query for waiting tasks. The polling round skips them until they are placed (<see cref="WorkSignals.PendingStarts"/>).
    /// </summary>
    private async Task FreshStartsAsync(CancellationToken stoppingToken)
    {
        var batch = new List<TaskState>();
        while (true)
        {
            try
            {
                if (!await signals.Starts.WaitToReadAsync(stoppingToken))
                {
                    return;
                }

                while (batch.Count < _options.BatchSize && signals.Starts.TryRead(out var task))
                {
                    batch.Add(task);
                }

                await PlaceAllAsync(batch, stoppingToken);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex) when (ex is NpgsqlException or TimeoutException or ConcurrencyException)
            {
                // What was not placed stays Scheduled in the view and is picked up by the polling round.
                SchedulerLog.RoundFailed(logger, ex);
                signals.Scheduler.Notify();
            }
            finally
            {
                foreach (var task in batch)
                {
                    signals.PendingStarts.TryRemove(task.Id, out _);
                }

                batch.Clear();
            }
        }
    }

    public async ValueTask<string?> TryPlaceAsync(TaskState scheduled, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(scheduled);
        if (!signals.FastPath || _plugins is not AllowAllPluginGate || scheduled.Spec is not { Broadcast: false } spec)
        {
            return null;
        }

        var now = time.GetUtcNow();
        await _placing.WaitAsync(cancellationToken);
        try
        {
            if (_snapshot is null || now - _snapshot.TakenAt > SnapshotAge)
            {
                _snapshot = new Snapshot(now, Candidates(await proplets.ListAsync(cancellationToken), now));
            }

            return Select(new PlacementRequest(spec.PropletId, new HashSet<string>(), 0, spec.Priority), _snapshot.Candidates).PropletId;
        }
        finally
        {
            _placing.Release();
        }
    }

    public OutgoingMessage StartMessage(TaskState dispatched, string? correlationId) => StartMessages.For(dispatched, _options.BaseTopic, correlationId);

    public void Dispatched(TaskState dispatched)
    {
        ArgumentNullException.ThrowIfNull(dispatched);

        // Each dispatch wakes the relay at once: a large round should not hold its first messages back.
        signals.Outbox.Notify();
        SchedulerLog.Dispatched(logger, dispatched.Id.ToString(), dispatched.PropletId ?? "");
    }

    /// <summary>One round over the waiting tasks; returns how many were dispatched.</summary>
    public async Task<int> ScheduleOnceAsync(CancellationToken cancellationToken)
    {
        var waiting = (await tasks.ListScheduledAsync(_options.BatchSize, cancellationToken)).Where(t => !signals.PendingStarts.ContainsKey(t.Id)).ToList();
        return waiting.Count == 0 ? 0 : await PlaceAllAsync(waiting, cancellationToken);
    }

    /// <summary>Places the tasks in order, then appends their dispatches in parallel; returns how many were dispatched.</summary>
    private async Task<int> PlaceAllAsync(IReadOnlyList<TaskState> waiting, CancellationToken cancellationToken)
    {
        if (waiting.Count == 0)
        {
            return 0;
        }

        var now = time.GetUtcNow();
        var views = (await proplets.ListAsync(cancellationToken)).ToDictionary(p => p.Id.Value, StringComparer.Ordinal);
        var candidates = Candidates(views.Values, now);
        var gated = _plugins is not AllowAllPluginGate;

        // Placement is decided in order (round-robin cursor, load counts); the appends then run in parallel. The fast
        // path and the polling round share the cursor, so they take turns here.
        var placed = new List<Placed>(waiting.Count);
        await _placing.WaitAsync(cancellationToken);
        try
        {
            foreach (var task in waiting)
            {
                var spec = task.Spec!;
                var request = new PlacementRequest(spec.PropletId, new HashSet<string>(), 0, spec.Priority);
                IReadOnlyList<PluginDecision> decisions = [];
                if (gated && !spec.Broadcast)
                {
                    // on_before_proplet_select (spec §7.7): may refuse, or narrow the candidates.
                    var select = await _plugins.BeforePropletSelectAsync(new PluginAuthContext(task.RequestedBy, PluginAction.None), PluginTaskInfos.From(task)!, cancellationToken);
                    decisions = select.Decisions;
                    if (!select.Allowed)
                    {
                        placed.Add(new Placed(task, null, decisions, "proplet selection blocked by plugin: " + (select.Reason is { Length: > 0 } r ? r : "denied")));
                        continue;
                    }

                    request = request with { RequiredTags = select.RequiredTags.ToHashSet(StringComparer.Ordinal), MinMemoryBytes = select.MinMemoryBytes };
                }

                placed.Add(new Placed(task, spec.Broadcast ? Placement.On("broadcast") : Select(request, candidates), decisions, null));
            }
        }
        finally
        {
            _placing.Release();
        }

        var dispatched = 0;
        await Parallel.ForEachAsync(
            placed,
            new ParallelOptions { MaxDegreeOfParallelism = _options.DispatchConcurrency, CancellationToken = cancellationToken },
            async (item, token) =>
            {
                if (await PlaceAsync(item, views, now, token))
                {
                    Interlocked.Increment(ref dispatched);
                }
            });

        return dispatched;
    }

    private async Task<bool> PlaceAsync(Placed item, IReadOnlyDictionary<string, PropletView> views, DateTimeOffset now, CancellationToken cancellationToken)
    {
        var task = item.Task;
        var stream = TaskAggregate.StreamId(task.Id);
        var decisions = item.Decisions;
        EventMetadata Metadata() => new(task.Id.ToString(), null, "system", now, PluginTaskInfos.Headers(decisions));
        if (item.Blocked is { } blocked)
        {
            await commands.HandleAsync(TaskAggregate.Decider, stream, new BlockDispatch(task.Id, blocked, now), Metadata(), cancellationToken);
            SchedulerLog.Blocked(logger, task.Id.ToString(), blocked);
            return false;
        }

        if (item.Placement!.PropletId is not { } propletId)
        {
            var deferred = await commands.HandleAsync(TaskAggregate.Decider, stream, new DeferDispatch(task.Id, item.Placement.WaitReason!, now), Metadata(), cancellationToken);
            if (deferred.Appended.Count > 0)
            {
                SchedulerLog.Waiting(logger, task.Id.ToString(), item.Placement.WaitReason!);
            }

            return false;
        }

        EquatableMap? extraEnv = null;
        if (_plugins is not AllowAllPluginGate && !task.Spec!.Broadcast)
        {
            // on_before_dispatch (spec §7.8): may refuse the chosen proplet, or add environment for it.
            var view = views.GetValueOrDefault(propletId);
            var proplet = new PluginPropletInfo(propletId, view?.Name ?? "", view is null ? [] : [.. view.Metadata.Tags], view?.Metadata.TotalMemoryBytes ?? 0, view?.Metadata.Location);
            var dispatch = await _plugins.BeforeDispatchAsync(new PluginAuthContext(task.RequestedBy, PluginAction.None), PluginTaskInfos.From(task)!, proplet, cancellationToken);
            decisions = [.. decisions, .. dispatch.Decisions];
            if (!dispatch.Allowed)
            {
                var reason = "dispatch blocked by plugin: " + (dispatch.Reason is { Length: > 0 } r ? r : "denied");
                await commands.HandleAsync(TaskAggregate.Decider, stream, new BlockDispatch(task.Id, reason, now), Metadata(), cancellationToken);
                SchedulerLog.Blocked(logger, task.Id.ToString(), reason);
                return false;
            }

            extraEnv = dispatch.ExtraEnv.Count > 0 ? new EquatableMap(dispatch.ExtraEnv) : null;
        }

        var metadata = Metadata();
        var result = await commands.HandleAsync(
            TaskAggregate.Decider, stream, new DispatchTask(task.Id, propletId, now, extraEnv), metadata,
            (state, events) => events.Any(e => e is TaskEvent.TaskDispatched) ? [StartMessages.For(state, _options.BaseTopic, metadata.CorrelationId)] : [],
            cancellationToken);
        if (!result.Appended.Any(e => e is TaskEvent.TaskDispatched))
        {
            return false;
        }

        Dispatched(result.State);
        return true;
    }

    /// <summary>Under <see cref="_placing"/>: chooses by policy and counts the task in on the chosen candidate.</summary>
    private Placement Select(PlacementRequest request, List<PropletCandidate> candidates) => PlacementPlanner.SelectAndCount(_options.Policy, request, candidates, ref _cursor);

    private List<PropletCandidate> Candidates(IEnumerable<PropletView> views, DateTimeOffset now) => PlacementPlanner.CandidatesOf(views, now, _options.LivenessWindow);

    /// <summary>The candidates immediate placement chooses from, with the tasks it placed since counted in.</summary>
    private sealed record Snapshot(DateTimeOffset TakenAt, List<PropletCandidate> Candidates);

    private sealed record Placed(TaskState Task, Placement? Placement, IReadOnlyList<PluginDecision> Decisions, string? Blocked);
}
