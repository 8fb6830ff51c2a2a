using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Propeller.Infrastructure.Mqtt;

/// <summary>
/// First handles the results the inbox holds unhandled from a previous run, then connects the manager to the broker
/// (the connection retries while it is down, subscribes to <c>{base}/#</c> when the broker kept no session, and
/// reconnects by itself) and hands every message to the <see cref="InboundHandler"/> before it is acknowledged.
/// </summary>
internal sealed class MqttBridgeHostedService(ManagerMqtt mqtt, InboundHandler handler, TimeProvider time, ILogger<MqttBridgeHostedService> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
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

        try
        {
            await mqtt.Connection.StartAsync(stoppingToken);
            MqttBridgeLog.Listening(logger, mqtt.Options.Address, mqtt.Options.BaseTopic + "/#");
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // stopping before the broker answered
        }
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
