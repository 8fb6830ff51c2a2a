using Propeller.Mqtt.Protocol;

namespace Propeller.Mqtt;

/// <summary>Session state of one packet identifier we allocated: an unacknowledged QoS 1/2 publish, or a
/// SUBSCRIBE/UNSUBSCRIBE waiting for its acknowledgement. Mutated only under the client's lock.</summary>
internal sealed class PendingOperation(PendingStage stage, MqttPacket.Publish? publish, long sequence)
{
    public PendingStage Stage { get; set; } = stage;

    public MqttPacket.Publish? Publish { get; } = publish;

    public long Sequence { get; } = sequence;

    /// <summary>Whether the publish was written to some connection (a resend then carries DUP).</summary>
    public bool Sent { get; set; }

    public bool IsPublish => Publish is not null;

    public TaskCompletionSource<MqttPacket?> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
}
