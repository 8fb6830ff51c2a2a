using Microsoft.Extensions.Options;
using Propeller.Infrastructure.Scheduling;
using Wolverine.Runtime;

namespace Propeller.Manager.Wolverine;

/// <summary>
/// Sends <see cref="KeepSweepChain"/> every <see cref="SchedulerOptions.IdleSweepInterval"/> until the host stops. Each
/// link of the sweep chain schedules the next in its own transaction, so a link that becomes a dead letter (its retries
/// spent) ends the chain, and only a proplet event or a deferral replaced it: a task waiting for a proplet that is back
/// by its heartbeats alone (they raise no event) stayed waiting, and the sweep's liveness and re-dispatch safety nets
/// stopped. The check is idempotent (a chain due soon enough is kept) and costs one document read per node and interval.
/// A failed send (PostgreSQL unreachable, Wolverine not yet running) is logged; the next tick tries again.
/// </summary>
internal sealed partial class SweepChainWatch(IWolverineRuntime runtime, IOptions<SchedulerOptions> options, TimeProvider time, ILogger<SweepChainWatch> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(options.Value.IdleSweepInterval, time);
        while (await WaitAsync(timer, stoppingToken))
        {
            try
            {
                await new MessageBus(runtime).PublishAsync(new KeepSweepChain());
            }
            catch (Exception ex) when (!stoppingToken.IsCancellationRequested)
            {
                LogNotSent(logger, ex);
            }
        }
    }

    private static async Task<bool> WaitAsync(PeriodicTimer timer, CancellationToken stoppingToken)
    {
        try
        {
            return await timer.WaitForNextTickAsync(stoppingToken);
        }
        catch (OperationCanceledException)
        {
            return false; // the host stops
        }
    }

    [LoggerMessage(EventId = 6110, Level = LogLevel.Warning, Message = "The check of the sweep chain could not be sent; trying again in one idle sweep interval")]
    private static partial void LogNotSent(ILogger logger, Exception exception);
}
