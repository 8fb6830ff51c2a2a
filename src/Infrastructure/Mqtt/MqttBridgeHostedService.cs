using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Propeller.Mqtt;

namespace Propeller.Infrastructure.Mqtt;

/// <summary>
/// Connects the manager to the broker (retrying while it is down), subscribes to <c>{base}/#</c> and feeds every
/// message to the <see cref="InboundHandler"/>, one at a time. The client reconnects and re-subscribes by itself.
/// </summary>
internal sealed class MqttBridgeHostedService(ManagerMqtt mqtt, InboundHandler handler, TimeProvider time, ILogger<MqttBridgeHostedService> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var delay = TimeSpan.FromMilliseconds(500);
        while (true)
        {
            try
            {
                await mqtt.Client.ConnectAsync(stoppingToken);
                break;
            }
            catch (Exception ex) when (ex is MqttException or IOException or System.Net.Sockets.SocketException or TimeoutException && !stoppingToken.IsCancellationRequested)
            {
                MqttBridgeLog.ConnectRetry(logger, mqtt.Options.Address, delay, ex.Message);
                await Task.Delay(delay, time, stoppingToken);
                delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, TimeSpan.FromSeconds(30).Ticks));
            }
        }

        var filter = mqtt.Options.BaseTopic + "/#";
        await mqtt.Client.SubscribeAsync([new MqttSubscription(filter, mqtt.Options.QualityOfService)], stoppingToken);
        mqtt.Subscribed = true;
        MqttBridgeLog.Listening(logger, mqtt.Options.Address, filter);
        await foreach (var message in mqtt.Client.Messages.ReadAllAsync(stoppingToken))
        {
            try
            {
                await handler.HandleAsync(message, stoppingToken);
            }
            catch (Exception ex) when (!stoppingToken.IsCancellationRequested && ex is not OperationCanceledException)
            {
                MqttBridgeLog.HandlerFailed(logger, ex, message.Topic);
            }
        }
    }
}
