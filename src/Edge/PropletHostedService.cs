using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Propeller.Edge.Configuration;

namespace Propeller.Edge;

/// <summary>Runs one <see cref="PropletNode"/> for the lifetime of the host (Ctrl-C / SIGTERM stop it cleanly).</summary>
internal sealed class PropletHostedService(PropletSettings settings, ILoggerFactory loggers, TimeProvider time) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
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
}
