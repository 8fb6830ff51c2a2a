using MQTTnet.Protocol;

namespace Propeller.Broker;

/// <summary>A message from the broker; its payload is the message's own (MQTTnet decodes each payload into a new array),
/// so it stays valid after the handler returned.</summary>
public sealed record ReceivedMessage(string Topic, ReadOnlyMemory<byte> Payload, MqttQualityOfServiceLevel Qos, bool Retain, bool Duplicate)
{
    /// <summary>Why a node that takes commands ignores one with <see cref="Retain"/> set: the protocol publishes with
    /// retain=false and the broker clears the flag on what it forwards to a subscription, so a retained one was kept from
    /// before the subscription and is handed out again at every (re)subscribe.</summary>
    public const string RetainedCommand = "a retained message (the protocol publishes with retain=false), kept by the broker from before this subscription; ignored";
}
