using Microsoft.Extensions.Logging.Abstractions;
using MQTTnet.Formatter;

namespace Propeller.Edge.Tests;

/// <summary>How a proplet gets its first connection.</summary>
public sealed class PropletConnectTests
{
    /// <summary>
    /// A proplet set to MQTT 3.1.1 connects: the Maximum Packet Size it always sets (PROPLET_MQTT_MAX_PACKET_SIZE) is an
    /// MQTT 5 field, and MQTTnet refused every connect that carried it under 3.1.1, so the proplet never connected.
    /// </summary>
    [Fact]
    public async Task GivenMqtt311AndAMaxPacketSize_WhenThePropletStarts_ThenItConnects()
    {
        var ct = TestContext.Current.CancellationToken;
        var settings = TestSettings.Create() with { MqttProtocolVersion = MqttProtocolVersion.V311, MaxPacketSize = 1024 * 1024, MetricsInterval = TimeSpan.Zero };
        await using var node = new PropletNode(settings, NullLoggerFactory.Instance, TimeProvider.System);
        using var limit = CancellationTokenSource.CreateLinkedTokenSource(ct);
        limit.CancelAfter(TimeSpan.FromSeconds(15));

        await node.StartAsync(limit.Token);

        node.IsConnected.ShouldBeTrue();
    }
}
