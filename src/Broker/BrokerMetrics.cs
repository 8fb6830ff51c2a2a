using System.Diagnostics.Metrics;

namespace Propeller.Broker;

/// <summary>Counters of the broker connections (meter <c>Propeller.Broker</c>, on the manager's /metrics).</summary>
internal static class BrokerMetrics
{
    private static readonly Meter Meter = new("Propeller.Broker");

    public static readonly Counter<long> Published = Meter.CreateCounter<long>("mqtt_messages_published", "{message}", "Messages the broker accepted");

    public static readonly Counter<long> PublishRetries = Meter.CreateCounter<long>("mqtt_publish_retries", "{message}", "Publishes sent again (quota exceeded, connection lost)");

    public static readonly Counter<long> Received = Meter.CreateCounter<long>("mqtt_messages_received", "{message}", "Messages handed to the handler");

    public static readonly Counter<long> Connects = Meter.CreateCounter<long>("mqtt_connects", "{connection}", "Successful connects (first and reconnects)");

    public static readonly Counter<long> ConnectionsLost = Meter.CreateCounter<long>("mqtt_connections_lost", "{connection}", "Connections that ended without DisconnectAsync");
}
