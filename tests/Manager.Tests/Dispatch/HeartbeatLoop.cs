using System.Text.Json;
using MQTTnet.Protocol;
using Propeller.Broker;

namespace Propeller.Manager.Tests.Dispatch;

/// <summary>A simulated proplet's heartbeats: one every 500 ms until disposed; one that cannot be sent (the broker down) is skipped.</summary>
internal sealed class HeartbeatLoop : IAsyncDisposable
{
    private readonly CancellationTokenSource _stop;
    private readonly Task _loop;

    private HeartbeatLoop(BrokerConnection proplet, string baseTopic, string propletId, CancellationToken cancellationToken)
    {
        _stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var token = _stop.Token;
        var payload = JsonSerializer.SerializeToUtf8Bytes(new { proplet_id = propletId, status = "alive" });
        _loop = Task.Run(async () =>
        {
            while (!token.IsCancellationRequested)
            {
                try
                {
                    await proplet.PublishAsync($"{baseTopic}/control/proplet/alive", payload, MqttQualityOfServiceLevel.AtMostOnce, token);
                }
                catch (Exception) when (!token.IsCancellationRequested)
                {
                    // the broker is down: the next heartbeat tries again
                }

                await Task.Delay(500, token).ContinueWith(_ => { }, TaskScheduler.Default);
            }
        }, CancellationToken.None);
    }

    public static HeartbeatLoop Start(BrokerConnection proplet, string baseTopic, string propletId, CancellationToken cancellationToken) =>
        new(proplet, baseTopic, propletId, cancellationToken);

    private int _disposed;

    /// <summary>Stops the heartbeats (again: nothing more).</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1)
        {
            return;
        }

        await _stop.CancelAsync();
        await _loop;
        _stop.Dispose();
    }
}
