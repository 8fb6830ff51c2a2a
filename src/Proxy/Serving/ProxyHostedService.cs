namespace Propeller.Proxy.Serving;

/// <summary>Starts the <see cref="ProxyNode"/> (connecting until the broker answers); the container disposes it at the
/// host's end (DISCONNECT, in-flight deliveries given 5 s).</summary>
internal sealed class ProxyHostedService(ProxyNode node, ILogger<ProxyHostedService> logger, IHostApplicationLifetime lifetime) : BackgroundService
{
    /// <summary>True once the proxy stopped on an error of its own (not asked to): the process then exits non-zero.</summary>
    public bool Failed { get; private set; }

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
        catch (Exception ex)
        {
            // Left to the host, it stopped (BackgroundServiceExceptionBehavior.StopHost) and the process exited 0: a
            // supervisor took the proxy for done, not failed (e.g. a client certificate whose key is not its own).
            ProxyLog.ProxyFailed(logger, ex.Message, ex);
            Failed = true;
            lifetime.StopApplication();
        }
    }
}
