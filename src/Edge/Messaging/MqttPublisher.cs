using Microsoft.Extensions.Logging;
using Propeller.Broker;
using Propeller.Contracts.Mqtt;
using Propeller.Edge.Configuration;

namespace Propeller.Edge.Messaging;

/// <summary>
/// <see cref="IPropletPublisher"/> over the proplet's <see cref="BrokerConnection"/>. The connection already waits for
/// a reconnect (up to PROPLET_MQTT_TIMEOUT) and sends again what a lost connection took; this adds a retry when a
/// publish fails outright (that wait timed out, or the broker refused it), so a result is kept until it is sent or the
/// proplet shuts down. A publish larger than the broker's Maximum Packet Size is not retried (no retry can send it): its
/// <see cref="BrokerPublishException"/> goes to the caller, which sends something smaller instead.
/// </summary>
public sealed class MqttPublisher(PropletSettings settings, ILogger<MqttPublisher> logger) : IPropletPublisher
{
    private BrokerConnection? _connection;

    public BrokerConnection? Connection
    {
        get => Volatile.Read(ref _connection);
        set => Volatile.Write(ref _connection, value);
    }

    public async Task PublishAsync(string path, ReadOnlyMemory<byte> payload, CancellationToken cancellationToken)
    {
        var topic = Topics.Of(settings.BaseTopic, path);
        var delay = TimeSpan.FromMilliseconds(250);
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            try
            {
                var connection = Connection ?? throw new InvalidOperationException("The broker connection is not created yet.");
                await connection.PublishAsync(topic, payload, settings.Qos, cancellationToken);
                return;
            }
            catch (Exception ex) when (ex is TimeoutException or BrokerPublishException { MaximumPacketSize: null } or InvalidOperationException or ObjectDisposedException
                                           && !cancellationToken.IsCancellationRequested)
            {
                EdgeLog.PublishRetry(logger, topic, delay, ex.Message);
                await Task.Delay(delay, cancellationToken);
                delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, TimeSpan.FromSeconds(10).Ticks));
            }
        }
    }
}
