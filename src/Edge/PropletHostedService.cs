using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Propeller.Edge.Configuration;

namespace Propeller.Edge;

/// <summary>Runs one <see cref="PropletNode"/> for the lifetime of the host (Ctrl-C / SIGTERM stop it cleanly).</summary>
internal sealed class PropletHostedService(PropletSettings settings, ILoggerFactory loggers, TimeProvider time, IHostApplicationLifetime lifetime) : BackgroundService
{
    /// <summary>True once the proplet stopped on an error of its own (not asked to): the process then exits non-zero.</summary>
    public bool Failed { get; private set; }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        try
        {
            await using var node = new PropletNode(settings, loggers, time);
            try
            {
                await node.StartAsync(stoppingToken);
                await Task.Delay(Timeout.Infinite, stoppingToken);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                // shutting down
            }
        }
        catch (Exception ex) when (ex is not OperationCanceledException || !stoppingToken.IsCancellationRequested)
        {
            // Left to the host, it stopped (BackgroundServiceExceptionBehavior.StopHost) and the process exited 0: a
            // supervisor took the proplet for done, not failed (e.g. a client certificate whose key is not its own).
            EdgeLog.PropletFailed(loggers.CreateLogger<PropletHostedService>(), ex.Message, ex);
            Failed = true;
            lifetime.StopApplication();
        }
    }
}
