using MQTTnet.Protocol;

namespace Propeller.Broker;

/// <summary>A Last Will: what the broker publishes when the client disappears without DISCONNECT.</summary>
public sealed record BrokerWill(string Topic, byte[] Payload, MqttQualityOfServiceLevel Qos = MqttQualityOfServiceLevel.AtLeastOnce);
