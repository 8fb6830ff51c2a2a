using System.Diagnostics.Metrics;

namespace Propeller.Mqtt;

/// <summary>Counters of the MQTT client (meter <c>Propeller.Mqtt</c>).</summary>
internal static class MqttMetrics
{
    public const string MeterName = "Propeller.Mqtt";

    private static readonly Meter Meter = new(MeterName);

    public static readonly Counter<long> MessagesPublished =
        Meter.CreateCounter<long>("propeller.mqtt.messages_published", "{message}", "Application messages handed to the broker");

    public static readonly Counter<long> MessagesReceived =
        Meter.CreateCounter<long>("propeller.mqtt.messages_received", "{message}", "Application messages delivered to the application");

    public static readonly Counter<long> DuplicatesSuppressed =
        Meter.CreateCounter<long>("propeller.mqtt.duplicates_suppressed", "{message}", "QoS 2 redeliveries not delivered again");

    public static readonly Counter<long> Retransmissions =
        Meter.CreateCounter<long>("propeller.mqtt.retransmissions", "{packet}", "QoS 1/2 packets resent after a reconnect");

    public static readonly Counter<long> Connects =
        Meter.CreateCounter<long>("propeller.mqtt.connects", "{connection}", "Successful connections (first connect and reconnects)");

    public static readonly Counter<long> ConnectionsLost =
        Meter.CreateCounter<long>("propeller.mqtt.connections_lost", "{connection}", "Connections that ended without DisconnectAsync");

    public static readonly Counter<long> ProtocolErrors =
        Meter.CreateCounter<long>("propeller.mqtt.protocol_errors", "{error}", "Malformed or unexpected packets received");
}
