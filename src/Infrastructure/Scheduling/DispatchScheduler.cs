using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Npgsql;
using Propeller.Application.Aggregates;
using Propeller.Application.EventStore;
using Propeller.Application.Messaging;
using Propeller.Application.Proplets;
using Propeller.Application.Scheduling;
using Propeller.Application.Tasks;
using Propeller.Domain.Tasks;
using static Propeller.Domain.Tasks.TaskCommand;

namespace Propeller.Infrastructure.Scheduling;

/// <summary>
/// Places waiting (Scheduled) tasks on proplets, driven by the task and proplet projections: appends TaskDispatched
/// and the start message (outbox) in one transaction, or records why the task waits. Safe on several nodes at once:
/// two schedulers racing for one task both decide on the same stream, and only one dispatch is appended.
/// </summary>
public sealed class DispatchScheduler(
    ITaskQueries tasks, IPropletRegistry proplets, CommandHandler commands, WorkSignals signals, IOptions<SchedulerOptions> options, TimeProvider time, ILogger<DispatchScheduler> logger)
    : BackgroundService
{
    private readonly SchedulerOptions _options = options.Value;
    private long _cursor;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
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
                return;
            }
            catch (Exception ex) when (ex is NpgsqlException or TimeoutException or ConcurrencyException)
            {
                SchedulerLog.RoundFailed(logger, ex);
                await Task.Delay(_options.PollInterval * 10, time, stoppingToken);
            }
        }
    }

    /// <summary>One round over the waiting tasks; returns how many were dispatched.</summary>
    public async Task<int> ScheduleOnceAsync(CancellationToken cancellationToken)
    {
        var waiting = await tasks.ListScheduledAsync(_options.BatchSize, cancellationToken);
        if (waiting.Count == 0)
        {
            return 0;
        }

        var now = time.GetUtcNow();
        var candidates = (await proplets.ListAsync(cancellationToken))
            .Select(p => new PropletCandidate(p.Id.Value, p.IsAlive(now, _options.LivenessWindow), p.RunningTasks, p.Metadata.Tags.ToHashSet(StringComparer.Ordinal), p.Metadata.TotalMemoryBytes))
            .ToList();
        // Placement is decided in order (round-robin cursor, load counts); the appends then run in parallel.
        var placed = new List<(TaskState Task, Placement Placement)>(waiting.Count);
        foreach (var task in waiting)
        {
            var spec = task.Spec!;
            var request = new PlacementRequest(spec.PropletId, new HashSet<string>(), 0, spec.Priority);
            var placement = spec.Broadcast ? Placement.On("broadcast") : PropletSelector.Select(_options.Policy, request, candidates, ref _cursor);
            placed.Add((task, placement));
            var index = placement.PropletId is { } chosen ? candidates.FindIndex(c => c.Id == chosen) : -1;
            if (index >= 0)
            {
                candidates[index] = candidates[index] with { RunningTasks = candidates[index].RunningTasks + 1 };
            }
        }

        var dispatched = 0;
        await Parallel.ForEachAsync(
            placed,
            new ParallelOptions { MaxDegreeOfParallelism = _options.DispatchConcurrency, CancellationToken = cancellationToken },
            async (item, token) =>
            {
                if (await PlaceAsync(item.Task, item.Placement, now, token))
                {
                    Interlocked.Increment(ref dispatched);
                }
            });
        if (dispatched > 0)
        {
            signals.Outbox.Notify();
        }

        return dispatched;
    }

    private async Task<bool> PlaceAsync(TaskState task, Placement placement, DateTimeOffset now, CancellationToken cancellationToken)
    {
        var stream = TaskAggregate.StreamId(task.Id);
        var metadata = new EventMetadata(task.Id.ToString(), null, "system", now);
        if (placement.PropletId is not { } propletId)
        {
            var deferred = await commands.HandleAsync(TaskAggregate.Decider, stream, new DeferDispatch(task.Id, placement.WaitReason!, now), metadata, cancellationToken);
            if (deferred.Appended.Count > 0)
            {
                SchedulerLog.Waiting(logger, task.Id.ToString(), placement.WaitReason!);
            }

            return false;
        }

        var result = await commands.HandleAsync(
            TaskAggregate.Decider, stream, new DispatchTask(task.Id, propletId, now), metadata,
            (state, events) => events.Any(e => e is TaskEvent.TaskDispatched) ? [StartMessages.For(state, _options.BaseTopic, metadata.CorrelationId)] : [],
            cancellationToken);
        if (!result.Appended.Any(e => e is TaskEvent.TaskDispatched))
        {
            return false;
        }

        // Each dispatch wakes the relay at once: a large round should not hold its first messages back.
        signals.Outbox.Notify();
        SchedulerLog.Dispatched(logger, task.Id.ToString(), propletId);
        return true;
    }
}
