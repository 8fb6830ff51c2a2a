using System.Diagnostics;
using System.Text.Json;
using Propeller.Mqtt;

namespace Propeller.Bench.Manager;

/// <summary>
/// A client on the broker that sees each start message and each result go by (QoS 0) and reports the task id with the
/// Stopwatch timestamp at which it arrived: where a task's time goes between the manager and the proplets.
/// </summary>
internal static class BrokerWatcher
{
    public static async Task<MqttClient> StartAsync(
        string broker, string baseTopic, string clientId, Action<string, long> started, Action<string, long> finished, CancellationToken cancellationToken)
    {
        var watcher = new MqttClient(new MqttClientOptions
        {
            ClientId = clientId,
            MessageHandler = (message, _) =>
            {
                var now = Stopwatch.GetTimestamp();
                using var json = JsonDocument.Parse(message.Payload);
                if (message.Topic.EndsWith("/control/manager/start", StringComparison.Ordinal))
                {
                    started(json.RootElement.GetProperty("id").GetString()!, now);
                }
                else if (json.RootElement.TryGetProperty("task_id", out var id))
                {
                    finished(id.GetString()!, now);
                }

                return ValueTask.CompletedTask;
            },
        }.WithAddress(broker));
        await watcher.ConnectAsync(cancellationToken);
        await watcher.SubscribeAsync(
            [new MqttSubscription($"{baseTopic}/control/manager/start", MqttQualityOfService.AtMostOnce), new MqttSubscription($"{baseTopic}/control/proplet/results", MqttQualityOfService.AtMostOnce)],
            cancellationToken);
        return watcher;
    }
}
