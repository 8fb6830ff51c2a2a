using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Propeller.Infrastructure.Mqtt;

/// <summary>
/// Connects the manager to the broker (the connection retries while it is down, subscribes to the proplets' topics
/// (<see cref="ManagerMqtt.Filters"/>) when the broker kept no session, renews them when it did, and reconnects by itself) and hands every message to the <see cref="InboundHandler"/> before it is acknowledged.
/// </summary>
internal sealed class MqttBridgeHostedService(ManagerMqtt mqtt, InboundHandler handler, ILogger<MqttBridgeHostedService> logger) : BackgroundService
{
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
    }
}
