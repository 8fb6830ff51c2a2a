using System.Diagnostics.Metrics;

namespace Propeller.Broker;

/// <summary>Counters of the broker connections (meter <c>Propeller.Broker</c>, on the manager's /metrics).</summary>
internal static class BrokerMetrics
{
    private static readonly Meter Meter = new("Propeller.Broker");

    public static readonly Counter<long> Published = Meter.CreateCounter<long>("mqtt_messages_published", "{message}", "Messages the broker accepted");

    public static readonly Counter<long> PublishRetries = Meter.CreateCounter<long>("mqtt_publish_retries", "{message}", "Publishes sent again (quota exceeded, connection lost)");

    public static readonly Counter<long> Received = Meter.CreateCounter<long>("mqtt_messages_received", "{message}", "Messages handed to the handler");

    /// <summary>Per batch handed to the handler, how long its oldest message waited for that since it arrived: the window of
    /// batches in flight was full, or the handler slow (the wait ADR 0016 decision 9 removed from the manager's results).</summary>
    public static readonly Histogram<double> ReceiveWait = Meter.CreateHistogram<double>(
        "mqtt_receive_wait_seconds", "s", "Time the oldest message of a batch waited, after it arrived, before the handler got it");

    public static readonly Counter<long> Connects = Meter.CreateCounter<long>("mqtt_connects", "{connection}", "Successful connects (first and reconnects)");

    public static readonly Counter<long> ConnectionsLost = Meter.CreateCounter<long>("mqtt_connections_lost", "{connection}", "Connections that ended without DisconnectAsync");
}
