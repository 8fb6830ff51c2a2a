using MQTTnet.Protocol;

namespace Propeller.Broker;

/// <summary>A message from the broker, its payload copied out of the connection's buffers.</summary>
public sealed record ReceivedMessage(string Topic, ReadOnlyMemory<byte> Payload, MqttQualityOfServiceLevel Qos, bool Retain, bool Duplicate);
