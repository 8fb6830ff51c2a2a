using System.Globalization;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Npgsql;
using Propeller.Application.Aggregates;
using Propeller.Application.EventStore;
using Propeller.Application.Proplets;
using Propeller.Application.Tasks;
using Propeller.Domain.Proplets;
using Propeller.Domain.Tasks;

namespace Propeller.Infrastructure.Scheduling;

/// <summary>
/// Watches proplet liveness (the original had none, spec §9.7): a proplet silent for longer than the liveness window
/// is marked offline (PropletWentOffline), and every task still running on an offline proplet is re-dispatched to
/// another one, up to <see cref="SchedulerOptions.MaxRedispatches"/> times, then failed; each step is an event.
/// Idempotent, so several nodes may run it.
/// </summary>
public sealed partial class LivenessMonitor(
    IPropletRegistry proplets, ITaskQueries tasks, CommandHandler commands, IOptions<SchedulerOptions> options, TimeProvider time, ILogger<LivenessMonitor> logger)
    : BackgroundService
{
    private readonly SchedulerOptions _options = options.Value;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await CheckOnceAsync(stoppingToken);
                await Task.Delay(_options.LivenessCheckInterval, time, stoppingToken);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex) when (ex is NpgsqlException or TimeoutException or ConcurrencyException)
            {
                LogRoundFailed(logger, ex);
                await Task.Delay(_options.LivenessCheckInterval, time, stoppingToken);
            }
        }
    }

    public async Task CheckOnceAsync(CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow();
        foreach (var proplet in await proplets.ListAsync(cancellationToken))
        {
            var silent = proplet.LastAliveAt is { } last && now - last > _options.LivenessWindow;
            var metadata = new EventMetadata(null, null, "system", now);
            if (silent && !proplet.Offline)
            {
                var reason = $"no heartbeat for {_options.LivenessWindow.TotalSeconds.ToString(CultureInfo.InvariantCulture)} s";
                await commands.HandleAsync(PropletAggregate.Decider, PropletAggregate.StreamId(proplet.Id), new PropletCommand.MarkPropletOffline(proplet.Id, reason, now), metadata, cancellationToken);
                LogSilent(logger, proplet.Id.Value, reason);
            }

            if ((proplet.Offline || silent) && proplet.RunningTasks > 0)
            {
                foreach (var task in await tasks.ListRunningOnAsync(proplet.Id.Value, cancellationToken))
                {
                    var command = new TaskCommand.RedispatchTask(task.Id, $"proplet {proplet.Id} went offline", _options.MaxRedispatches, now);
                    await commands.HandleAsync(TaskAggregate.Decider, TaskAggregate.StreamId(task.Id), command, metadata, cancellationToken);
                    LogRedispatch(logger, task.Id.ToString(), proplet.Id.Value);
                }
            }
        }
    }

    [LoggerMessage(EventId = 6101, Level = LogLevel.Warning, Message = "Proplet {PropletId} marked offline: {Reason}")]
    private static partial void LogSilent(ILogger logger, string propletId, string reason);

    [LoggerMessage(EventId = 6102, Level = LogLevel.Warning, Message = "Task {TaskId} was running on offline proplet {PropletId}: re-dispatching (or failing at the limit)")]
    private static partial void LogRedispatch(ILogger logger, string taskId, string propletId);

    [LoggerMessage(EventId = 6103, Level = LogLevel.Warning, Message = "Liveness check failed; retrying")]
    private static partial void LogRoundFailed(ILogger logger, Exception exception);
}
