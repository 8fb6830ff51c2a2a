using System.Diagnostics;
using System.Text.Json;
using MQTTnet.Protocol;
using Propeller.Broker;

namespace Propeller.Bench.Manager;

/// <summary>
/// A client on the broker that sees each start message and each result go by (QoS 0) and reports the task id with the
/// Stopwatch timestamp at which it arrived: where a task's time goes between the manager and the proplets.
/// </summary>
internal static class BrokerWatcher
{
    public static async Task<BrokerConnection> StartAsync(
        string broker, string baseTopic, string clientId, Action<string, long> started, Action<string, long> finished, CancellationToken cancellationToken)
    {
        var watcher = new BrokerConnection(new BrokerOptions { ClientId = clientId }.WithAddress(broker))
        {
            Handler = ManagerBenchmark.EachMessage((message, _) =>
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
            }),
        };
        await watcher.StartAsync(cancellationToken);
        await watcher.SubscribeAsync($"{baseTopic}/control/manager/start", MqttQualityOfServiceLevel.AtMostOnce, cancellationToken);
        await watcher.SubscribeAsync($"{baseTopic}/control/proplet/results", MqttQualityOfServiceLevel.AtMostOnce, cancellationToken);
        return watcher;
    }
}
