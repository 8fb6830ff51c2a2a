using Propeller.Mqtt.Protocol;

namespace Propeller.Mqtt;

/// <summary>Session state of one packet identifier we allocated: an unacknowledged QoS 1/2 publish, or a
/// SUBSCRIBE/UNSUBSCRIBE waiting for its acknowledgement. Mutated only under the client's lock.</summary>
internal sealed class PendingOperation(PendingStage stage, MqttPacket.Publish? publish, long sequence)
{
    public PendingStage Stage { get; set; } = stage;

    public MqttPacket.Publish? Publish { get; private set; } = publish;

    public long Sequence { get; private set; } = sequence;

    /// <summary>Whether a publish got its packet id (it then holds a window slot and is in the session state).</summary>
    public bool Started { get; private set; }

    /// <summary>Whether the publish was written to some connection (a resend then carries DUP).</summary>
    public bool Sent { get; set; }

    public bool IsPublish => Publish is not null;

    public void Start(ushort packetId, long sequence)
    {
        Publish = Publish! with { PacketId = packetId };
        Sequence = sequence;
        Started = true;
    }

    public TaskCompletionSource<MqttPacket?> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
}
