using Microsoft.Extensions.Logging;

namespace Propeller.Mqtt;

internal static partial class MqttLog
{
    [LoggerMessage(1, LogLevel.Information, "MQTT connected to {Host}:{Port} as '{ClientId}' (protocol {Version}, session present {SessionPresent})")]
    public static partial void Connected(ILogger logger, string host, int port, string clientId, MqttProtocolVersion version, bool sessionPresent);

    [LoggerMessage(2, LogLevel.Warning, "MQTT connection to {Host}:{Port} lost: {Reason}")]
    public static partial void ConnectionLost(ILogger logger, string host, int port, string reason);

    [LoggerMessage(3, LogLevel.Warning, "MQTT reconnect attempt {Attempt} to {Host}:{Port} failed; next attempt in {DelayMs} ms")]
    public static partial void ReconnectFailed(ILogger logger, int attempt, string host, int port, long delayMs, Exception exception);

    [LoggerMessage(4, LogLevel.Error, "MQTT protocol violation from {Host}:{Port}, closing the connection: {Reason}")]
    public static partial void ProtocolViolation(ILogger logger, string host, int port, string reason);

    [LoggerMessage(5, LogLevel.Information, "MQTT resent {Count} unacknowledged packets after reconnect")]
    public static partial void Retransmitted(ILogger logger, int count);

    [LoggerMessage(6, LogLevel.Information, "MQTT re-subscribed {Count} topic filters")]
    public static partial void Resubscribed(ILogger logger, int count);

    [LoggerMessage(7, LogLevel.Debug, "MQTT duplicate QoS 2 delivery of packet {PacketId} suppressed")]
    public static partial void DuplicateSuppressed(ILogger logger, ushort packetId);

    [LoggerMessage(8, LogLevel.Error, "MQTT message handler failed for topic {Topic}")]
    public static partial void HandlerFailed(ILogger logger, string topic, Exception exception);

    [LoggerMessage(9, LogLevel.Warning, "MQTT keep-alive: no PINGRESP from {Host}:{Port} within {TimeoutMs} ms")]
    public static partial void KeepAliveTimeout(ILogger logger, string host, int port, long timeoutMs);

    [LoggerMessage(10, LogLevel.Warning, "MQTT broker {Host}:{Port} sent DISCONNECT with reason 0x{ReasonCode:X2} {ReasonString}")]
    public static partial void ServerDisconnect(ILogger logger, string host, int port, byte reasonCode, string? reasonString);

    [LoggerMessage(11, LogLevel.Debug, "MQTT acknowledgement {Type} for unknown packet id {PacketId} ignored")]
    public static partial void UnknownPacketId(ILogger logger, string type, ushort packetId);

    [LoggerMessage(12, LogLevel.Warning, "MQTT re-subscription failed; it will be retried on the next reconnect")]
    public static partial void ResubscribeFailed(ILogger logger, Exception exception);

    [LoggerMessage(13, LogLevel.Information, "MQTT disconnected from {Host}:{Port}")]
    public static partial void Disconnected(ILogger logger, string host, int port);

    [LoggerMessage(40, LogLevel.Warning, "The MQTT Connected callback failed")]
    public static partial void ConnectedCallbackFailed(ILogger logger, Exception exception);
}
