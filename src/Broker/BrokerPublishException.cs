using MQTTnet;

namespace Propeller.Broker;

/// <summary>The broker refused a publish (a reason code other than success, no matching subscribers or quota exceeded), or
/// it was not sent because its packet is larger than the broker's Maximum Packet Size.</summary>
public sealed class BrokerPublishException : Exception
{
    public BrokerPublishException()
    {
    }

    public BrokerPublishException(string message)
        : base(message)
    {
    }

    public BrokerPublishException(string message, Exception innerException)
        : base(message, innerException)
    {
    }

    public BrokerPublishException(string topic, MqttClientPublishReasonCode reasonCode, string? reasonString)
        : base($"The broker refused the publish on {topic}: {reasonCode}{(string.IsNullOrEmpty(reasonString) ? "" : " (" + reasonString + ")")}")
    {
        ReasonCode = reasonCode;
    }

    /// <summary>Not sent: its packet (<paramref name="packetSize"/> bytes) is larger than the broker's Maximum Packet Size
    /// (MQTT 5). Sending it again cannot help.</summary>
    public BrokerPublishException(string topic, long packetSize, long maximumPacketSize)
        : base($"The publish on {topic} was not sent: its packet of {packetSize} bytes is larger than the broker's maximum packet size of {maximumPacketSize} bytes")
    {
        PacketSize = packetSize;
        MaximumPacketSize = maximumPacketSize;
    }

    public MqttClientPublishReasonCode? ReasonCode { get; }

    /// <summary>The refused packet's size, when it was refused for its size.</summary>
    public long? PacketSize { get; }

    /// <summary>The broker's Maximum Packet Size the packet exceeded; set only for that refusal, which no retry mends.</summary>
    public long? MaximumPacketSize { get; }
}
