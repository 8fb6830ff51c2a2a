namespace Propeller.Proxy.Serving;

/// <summary>Starts the <see cref="ProxyNode"/> (connecting until the broker answers); the container disposes it at the
/// host's end (DISCONNECT, in-flight deliveries given 5 s).</summary>
internal sealed class ProxyHostedService(ProxyNode node) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        try
        {
            await node.StartAsync(stoppingToken);
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // shutting down
        }
    }
}
