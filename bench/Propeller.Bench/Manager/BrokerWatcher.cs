using System.Diagnostics;
using System.Text.Json;
using MQTTnet.Protocol;
using Propeller.Broker;

namespace Propeller.Bench.Manager;

/// <summary>
/// A client on the broker that sees each start message and each result go by (QoS 0) and reports the task id with the
/// Stopwatch timestamp at which it arrived: where a task's time goes between the manager and the proplets. A result's
/// error (null when it has none) is passed on: a proplet failing every task answers fast, and its "results" must not be
/// timed as if they were.
/// </summary>
internal static class BrokerWatcher
{
    public static async Task<BrokerConnection> StartAsync(
        string broker, string baseTopic, string clientId, Action<string, long> started, Action<string, long, string?> finished, CancellationToken cancellationToken)
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
                    finished(id.GetString()!, now, Error(json.RootElement));
                }

                return ValueTask.CompletedTask;
            }),
        };
        await watcher.StartAsync(cancellationToken);
        await watcher.SubscribeAsync($"{baseTopic}/control/manager/start", MqttQualityOfServiceLevel.AtMostOnce, cancellationToken);
        await watcher.SubscribeAsync($"{baseTopic}/control/proplet/results", MqttQualityOfServiceLevel.AtMostOnce, cancellationToken);
        return watcher;
    }

    /// <summary>A result's `error`: null when absent, null or empty (the proplets send `"error":null` on success).</summary>
    private static string? Error(JsonElement result) =>
        result.TryGetProperty("error", out var error) ? error.ValueKind switch
        {
            JsonValueKind.Null or JsonValueKind.Undefined => null,
            JsonValueKind.String => error.GetString() is { Length: > 0 } text ? text : null,
            _ => error.GetRawText(),
        }
        : null;
}
