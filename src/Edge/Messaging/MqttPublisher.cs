using Microsoft.Extensions.Logging;
using Propeller.Contracts.Mqtt;
using Propeller.Edge.Configuration;
using Propeller.Mqtt;

namespace Propeller.Edge.Messaging;

/// <summary>
/// <see cref="IPropletPublisher"/> over our MQTT client. The client already holds publishes while it reconnects and
/// resends unacknowledged QoS 1/2 ones; this adds a retry when a publish fails outright (the client was stopped or the
/// broker refused it), so a result is kept until it is sent or the proplet shuts down.
/// </summary>
public sealed class MqttPublisher(PropletSettings settings, ILogger<MqttPublisher> logger) : IPropletPublisher
{
    private MqttClient? _client;

    public MqttClient? Client
    {
        get => Volatile.Read(ref _client);
        set => Volatile.Write(ref _client, value);
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
                var client = Client ?? throw new MqttException("The MQTT client is not created yet.");
                await client.PublishAsync(topic, payload, settings.Qos, retain: false, cancellationToken);
                return;
            }
            catch (Exception ex) when (ex is MqttException or ObjectDisposedException)
            {
                EdgeLog.PublishRetry(logger, topic, delay, ex.Message);
                await Task.Delay(delay, cancellationToken);
                delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, TimeSpan.FromSeconds(10).Ticks));
            }
        }
    }
}
