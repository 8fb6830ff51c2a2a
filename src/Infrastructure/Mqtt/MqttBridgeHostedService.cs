using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Propeller.Broker;

namespace Propeller.Infrastructure.Mqtt;

/// <summary>
/// Connects the manager to the broker (the connection retries while it is down, subscribes to the proplets' topics
/// (<see cref="ManagerMqtt.Filters"/>) when the broker kept no session, renews them when it did, and reconnects by itself) and hands every message to the <see cref="InboundHandler"/> before it is acknowledged.
/// </summary>
/// <remarks>
/// When the host begins to stop (<see cref="StoppingAsync"/>, before any hosted service stops) nothing more is handed
/// over: the batches with the handler are cancelled, and they and every later one are held unacknowledged until the
/// connection closes at <see cref="StoppedAsync"/>, after every hosted service stopped; the broker delivers them to the
/// next session (a duplicate is recorded as ignored). A result whose command the stopping batcher cancelled is so never
/// acknowledged without being recorded. What the manager sends goes out until then: Wolverine drains its broker queue
/// (starts committed by requests still being served, timers) as it stops. Before session 42 the connection closed at
/// StoppingAsync, and each such publish failed (ObjectDisposedException) and used up its retries.
/// </remarks>
internal sealed class MqttBridgeHostedService(ManagerMqtt mqtt, InboundHandler handler, ILogger<MqttBridgeHostedService> logger)
    : BackgroundService, IHostedLifecycleService
{
    // Not disposed: the connection's dispatch may read its token after the host is disposed (a start that failed, with
    // no StoppedAsync); it holds no timer.
    private readonly CancellationTokenSource _closing = new();

    public Task StartingAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StartedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StoppingAsync(CancellationToken cancellationToken) => _closing.CancelAsync();

    public async Task StoppedAsync(CancellationToken cancellationToken) => await mqtt.Connection.DisposeAsync();

    /// <summary>The handler, cut off once the host stops: a batch it has then, or gets after, is held (not acknowledged)
    /// until the connection closes (its token).</summary>
    private Func<IReadOnlyList<ReceivedMessage>, CancellationToken, ValueTask> UntilClosing(Func<IReadOnlyList<ReceivedMessage>, CancellationToken, ValueTask> handle) =>
        async (messages, token) =>
        {
            if (!_closing.IsCancellationRequested)
            {
                using var linked = CancellationTokenSource.CreateLinkedTokenSource(token, _closing.Token);
                try
                {
                    await handle(messages, linked.Token);
                }
                catch (OperationCanceledException) when (_closing.IsCancellationRequested && !token.IsCancellationRequested)
                {
                    // held below
                }
            }

            if (_closing.IsCancellationRequested)
            {
                await Task.Delay(Timeout.Infinite, token); // ends as the connection closes: not acknowledged
            }
        };

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        mqtt.Inbound = UntilClosing(handler.Guarded(logger));

        try
        {
            await mqtt.Connection.StartAsync(stoppingToken);
            MqttBridgeLog.Listening(logger, BrokerOptions.Redacted(mqtt.Options.Address), string.Join(", ", mqtt.Connection.SubscribedFilters()));
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
