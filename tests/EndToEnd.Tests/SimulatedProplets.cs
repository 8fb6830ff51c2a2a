using System.Collections.Concurrent;
using System.Text.Json;
using MQTTnet.Protocol;
using Propeller.Broker;

namespace Propeller.EndToEnd.Tests;

/// <summary>
/// Proplets without a runtime, on the broker (QoS 1, a persistent session each): each announces itself, sends a
/// heartbeat every 2 s, counts every start message addressed to it and answers it with a result at once (or, while
/// <see cref="Hold"/> is set, once <see cref="ReleaseAsync"/> is called). Many tasks in little time, which real
/// proplets processes on this machine could not do.
/// </summary>
internal sealed class SimulatedProplets : IAsyncDisposable
{
    private readonly List<BrokerConnection> _connections = [];
    private readonly ConcurrentDictionary<string, int> _starts = new(StringComparer.Ordinal);
    private readonly ConcurrentQueue<(BrokerConnection Connection, string PropletId, string TaskId)> _held = new();
    private readonly CancellationTokenSource _stop = new();
    private readonly string _baseTopic;
    private Task _heartbeats = Task.CompletedTask;

    private SimulatedProplets(string baseTopic)
    {
        _baseTopic = baseTopic;
    }

    public List<string> Ids { get; } = [];

    /// <summary>Start messages received per task id (a start published twice counts twice).</summary>
    public IReadOnlyDictionary<string, int> Starts => _starts;

    /// <summary>While set, starts are counted but not answered until <see cref="ReleaseAsync"/>.</summary>
    public bool Hold { get; set; }

    public static async Task<SimulatedProplets> StartAsync(string tenant, int count, CancellationToken cancellationToken)
    {
        var proplets = new SimulatedProplets($"m/{tenant}/c/c1");
        for (var i = 0; i < count; i++)
        {
            var id = Guid.NewGuid().ToString();
            proplets.Ids.Add(id);
            await proplets.ConnectAsync(id, cancellationToken);
        }

        proplets._heartbeats = proplets.HeartbeatsAsync();
        return proplets;
    }

    /// <summary>Answers every start held so far.</summary>
    public async Task ReleaseAsync(CancellationToken cancellationToken)
    {
        Hold = false;
        while (_held.TryDequeue(out var held))
        {
            await AnswerAsync(held.Connection, held.PropletId, held.TaskId, cancellationToken);
        }
    }

    /// <summary>Proplet <paramref name="index"/>'s discovery, reporting that it holds <paramref name="held"/> (task, attempt).</summary>
    public Task ReportAsync(int index, IEnumerable<(string TaskId, int Attempt)> held, CancellationToken cancellationToken) =>
        _connections[index].PublishAsync(
            $"{_baseTopic}/control/proplet/create",
            JsonSerializer.SerializeToUtf8Bytes(new { proplet_id = Ids[index], @namespace = "default", tasks = held.Select(h => new { task_id = h.TaskId, attempt = h.Attempt }) }),
            MqttQualityOfServiceLevel.AtLeastOnce,
            cancellationToken);

    /// <summary>Sends a result again, as a broker redelivering it would.</summary>
    public Task SendResultAgainAsync(string taskId, CancellationToken cancellationToken) =>
        AnswerAsync(_connections[0], Ids[0], taskId, cancellationToken);

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        await _heartbeats;
        foreach (var connection in _connections)
        {
            await connection.DisposeAsync();
        }

        _stop.Dispose();
    }

    private async Task ConnectAsync(string propletId, CancellationToken cancellationToken)
    {
        BrokerConnection? connection = null;
        connection = new BrokerConnection(new BrokerOptions { ClientId = propletId, CleanStart = false, SessionExpiryInterval = 3600 }.WithAddress(Cluster.Mqtt))
        {
            Handler = async (messages, token) =>
            {
                foreach (var message in messages)
                {
                    var start = JsonDocument.Parse(message.Payload).RootElement;
                    if (!start.TryGetProperty("proplet_id", out var target) || target.GetString() != propletId)
                    {
                        continue;
                    }

                    var taskId = start.GetProperty("id").GetString()!;
                    _starts.AddOrUpdate(taskId, 1, (_, n) => n + 1);
                    if (Hold)
                    {
                        _held.Enqueue((connection!, propletId, taskId));
                        continue;
                    }

                    await AnswerAsync(connection!, propletId, taskId, token);
                }
            },
        };
        _connections.Add(connection);
        await connection.StartAsync(cancellationToken);
        await connection.SubscribeAsync($"{_baseTopic}/control/manager/start", MqttQualityOfServiceLevel.AtLeastOnce, cancellationToken);
        await AliveAsync(connection, propletId, cancellationToken);
    }

    private Task AnswerAsync(BrokerConnection connection, string propletId, string taskId, CancellationToken cancellationToken) =>
        connection.PublishAsync(
            $"{_baseTopic}/control/proplet/results",
            JsonSerializer.SerializeToUtf8Bytes(new { task_id = taskId, proplet_id = propletId, results = "42", error = (string?)null }),
            MqttQualityOfServiceLevel.AtLeastOnce,
            cancellationToken);

    private Task AliveAsync(BrokerConnection connection, string propletId, CancellationToken cancellationToken) =>
        connection.PublishAsync(
            $"{_baseTopic}/control/proplet/alive",
            JsonSerializer.SerializeToUtf8Bytes(new { proplet_id = propletId, status = "alive" }),
            MqttQualityOfServiceLevel.AtLeastOnce,
            cancellationToken);

    private async Task HeartbeatsAsync()
    {
        try
        {
            while (true)
            {
                await Task.Delay(TimeSpan.FromSeconds(2), _stop.Token);
                for (var i = 0; i < _connections.Count; i++)
                {
                    await AliveAsync(_connections[i], Ids[i], _stop.Token);
                }
            }
        }
        catch (OperationCanceledException)
        {
            // disposed
        }
    }
}
