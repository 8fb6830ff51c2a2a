namespace Propeller.Mqtt.Protocol;

internal enum MqttDecodeStatus
{
    /// <summary>The buffer holds no complete packet yet; nothing was consumed.</summary>
    NeedMoreData,

    /// <summary>A packet was decoded and consumed.</summary>
    Packet,

    /// <summary>The bytes violate the protocol or the size limit; the connection must be closed.</summary>
    Malformed,
}
