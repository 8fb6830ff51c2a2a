namespace Propeller.Mqtt.Protocol;

/// <summary>The closed set of MQTT control packets, as decoded from and encoded to the wire.</summary>
internal abstract record MqttPacket
{
    private MqttPacket()
    {
    }

    public abstract MqttPacketType Type { get; }

    /// <summary>CONNECT. <see cref="Version"/> is the protocol level the packet was (or is to be) encoded with.</summary>
    public sealed record Connect(
        MqttProtocolVersion Version,
        string ClientId,
        bool CleanStart,
        ushort KeepAliveSeconds,
        string? Username,
        byte[]? Password,
        WillMessage? Will,
        MqttProperties? Properties) : MqttPacket
    {
        public override MqttPacketType Type => MqttPacketType.Connect;
    }

    public sealed record WillMessage(
        string Topic,
        ReadOnlyMemory<byte> Payload,
        MqttQualityOfService Qos,
        bool Retain,
        MqttProperties? Properties);

    public sealed record ConnAck(bool SessionPresent, byte ReasonCode, MqttProperties? Properties) : MqttPacket
    {
        public override MqttPacketType Type => MqttPacketType.ConnAck;
    }

    public sealed record Publish(
        string Topic,
        ReadOnlyMemory<byte> Payload,
        MqttQualityOfService Qos,
        bool Retain,
        bool Dup,
        ushort PacketId,
        MqttProperties? Properties) : MqttPacket
    {
        public override MqttPacketType Type => MqttPacketType.Publish;
    }

    /// <summary>PUBACK, PUBREC, PUBREL or PUBCOMP (same layout).</summary>
    public sealed record PublishAck(MqttPacketType Kind, ushort PacketId, byte ReasonCode, MqttProperties? Properties) : MqttPacket
    {
        public override MqttPacketType Type => Kind;
    }

    public sealed record SubscribeEntry(string Filter, byte Options);

    public sealed record Subscribe(ushort PacketId, IReadOnlyList<SubscribeEntry> Entries, MqttProperties? Properties) : MqttPacket
    {
        public override MqttPacketType Type => MqttPacketType.Subscribe;
    }

    public sealed record SubAck(ushort PacketId, byte[] ReasonCodes, MqttProperties? Properties) : MqttPacket
    {
        public override MqttPacketType Type => MqttPacketType.SubAck;
    }

    public sealed record Unsubscribe(ushort PacketId, IReadOnlyList<string> Filters, MqttProperties? Properties) : MqttPacket
    {
        public override MqttPacketType Type => MqttPacketType.Unsubscribe;
    }

    /// <summary>UNSUBACK; <see cref="ReasonCodes"/> is empty on MQTT 3.1.1.</summary>
    public sealed record UnsubAck(ushort PacketId, byte[] ReasonCodes, MqttProperties? Properties) : MqttPacket
    {
        public override MqttPacketType Type => MqttPacketType.UnsubAck;
    }

    public sealed record PingReq : MqttPacket
    {
        public static readonly PingReq Instance = new();

        public override MqttPacketType Type => MqttPacketType.PingReq;
    }

    public sealed record PingResp : MqttPacket
    {
        public static readonly PingResp Instance = new();

        public override MqttPacketType Type => MqttPacketType.PingResp;
    }

    public sealed record Disconnect(byte ReasonCode, MqttProperties? Properties) : MqttPacket
    {
        public override MqttPacketType Type => MqttPacketType.Disconnect;
    }

    public sealed record Auth(byte ReasonCode, MqttProperties? Properties) : MqttPacket
    {
        public override MqttPacketType Type => MqttPacketType.Auth;
    }
}
