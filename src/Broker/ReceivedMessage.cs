using MQTTnet.Protocol;

namespace Propeller.Broker;

/// <summary>A message from the broker; its payload is the message's own (MQTTnet decodes each payload into a new array),
/// so it stays valid after the handler returned.</summary>
public sealed record ReceivedMessage(string Topic, ReadOnlyMemory<byte> Payload, MqttQualityOfServiceLevel Qos, bool Retain, bool Duplicate);
