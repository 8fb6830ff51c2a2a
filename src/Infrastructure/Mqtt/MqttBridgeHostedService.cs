using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Propeller.Infrastructure.Mqtt;

/// <summary>
/// Connects the manager to the broker (the connection retries while it is down, subscribes to the proplets' topics
/// (<see cref="ManagerMqtt.Filters"/>) when the broker kept no session, renews them when it did, and reconnects by itself) and hands every message to the <see cref="InboundHandler"/> before it is acknowledged.
/// </summary>
/// <remarks>
/// The connection closes when the host begins to stop (<see cref="StoppingAsync"/>, before any hosted service stops), so
/// no message is handed over while the command batcher and Wolverine shut down: a result whose command the stopping
/// batcher cancelled would otherwise have been acknowledged without being recorded. Batches still with the handler then
/// are not acknowledged, and the broker delivers them to the next session (a duplicate is recorded as ignored).
/// </remarks>
internal sealed class MqttBridgeHostedService(ManagerMqtt mqtt, InboundHandler handler, ILogger<MqttBridgeHostedService> logger)
    : BackgroundService, IHostedLifecycleService
{
    public Task StartingAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StartedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public async Task StoppingAsync(CancellationToken cancellationToken) => await mqtt.Connection.DisposeAsync();

    public Task StoppedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        mqtt.Inbound = handler.Guarded(logger);

        try
        {
            await mqtt.Connection.StartAsync(stoppingToken);
            MqttBridgeLog.Listening(logger, mqtt.Options.Address, string.Join(", ", mqtt.Connection.Options.Subscriptions.Select(s => s.Filter)));
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // stopping before the broker answered
        }
        catch (ObjectDisposedException)
        {
            // stopping: the connection closed before it connected
        }
    }
}
