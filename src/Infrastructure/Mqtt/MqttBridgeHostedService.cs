using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Propeller.Mqtt;

namespace Propeller.Infrastructure.Mqtt;

/// <summary>
/// Connects the manager to the broker (retrying while it is down), subscribes to <c>{base}/#</c> and hands every
/// message to the <see cref="InboundHandler"/> before it is acknowledged; first queues the results the inbox holds
/// unhandled from a previous run. The client reconnects and re-subscribes by itself.
/// </summary>
internal sealed class MqttBridgeHostedService(ManagerMqtt mqtt, InboundHandler handler, TimeProvider time, ILogger<MqttBridgeHostedService> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        handler.Start(stoppingToken);
        await RecoverAsync(stoppingToken);
        mqtt.Inbound = async (messages, token) =>
        {
            try
            {
                await handler.AcceptBatchAsync(messages, token);
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                MqttBridgeLog.HandlerFailed(logger, ex, messages[0].Topic);
            }
        };

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
        await Task.Delay(Timeout.Infinite, stoppingToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        await base.StopAsync(cancellationToken);
        await handler.DisposeAsync();
    }

    private async Task RecoverAsync(CancellationToken stoppingToken)
    {
        var delay = TimeSpan.FromMilliseconds(500);
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                var recovered = await handler.RecoverAsync(stoppingToken);
                if (recovered > 0)
                {
                    MqttBridgeLog.Recovered(logger, recovered);
                }

                return;
            }
            catch (Exception ex) when (ex is Npgsql.NpgsqlException or TimeoutException)
            {
                MqttBridgeLog.RecoverRetry(logger, delay, ex.Message);
                await Task.Delay(delay, time, stoppingToken);
                delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, TimeSpan.FromSeconds(30).Ticks));
            }
        }
    }
}
