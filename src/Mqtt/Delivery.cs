using Propeller.Mqtt.Protocol;

namespace Propeller.Mqtt;

/// <summary>A received message on its way to the message handler, with the acknowledgement to send once it returns.</summary>
internal sealed record Delivery(MqttMessage Message, MqttConnection Connection, MqttPacket? Ack);
