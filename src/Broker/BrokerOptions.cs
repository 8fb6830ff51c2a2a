using MQTTnet.Formatter;
using MQTTnet.Protocol;

namespace Propeller.Broker;

/// <summary>
/// Settings of a <see cref="BrokerConnection"/>: where (<see cref="WithAddress"/>), who (client id, username, password),
/// the session (clean start, expiry), keep-alive, Last Will, TLS, and this layer's own limits (in-flight window,
/// operation timeout, reconnect backoff).
/// </summary>
public sealed class BrokerOptions
{
    public string Host { get; set; } = "localhost";

    public int Port { get; set; } = 1883;

    /// <summary>TLS settings; null means plain TCP.</summary>
    public BrokerTls? Tls { get; set; }

    /// <summary>MQTT 5 by default; <see cref="MqttProtocolVersion.V311"/> is selectable.</summary>
    public MqttProtocolVersion ProtocolVersion { get; set; } = MqttProtocolVersion.V500;

    public string ClientId { get; set; } = string.Empty;

    public string? Username { get; set; }

    public string? Password { get; set; }

    /// <summary>Clean start (3.1.1: clean session). False keeps the broker session (with <see cref="SessionExpiryInterval"/>).</summary>
    public bool CleanStart { get; set; } = true;

    /// <summary>MQTT 5 session expiry in seconds (0: the session ends with the connection).</summary>
    public uint SessionExpiryInterval { get; set; }

    public TimeSpan KeepAlive { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>How long one connect attempt may take.</summary>
    public TimeSpan ConnectTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>How long a publish or subscribe may wait, a wait for the connection included.</summary>
    public TimeSpan OperationTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Most QoS 1/2 publishes in flight; lowered to the broker's Receive Maximum when it announces one
    /// (MQTT 5). A 3.1.1 broker announces nothing and drops what is over its limit silently (mosquitto:
    /// max_inflight_messages, 20 by default), so keep this at or below that.</summary>
    public int MaxInflight { get; set; } = 16;

    /// <summary>Largest packet accepted (0: no limit announced). MQTT 5 only: under 3.1.1 it is not sent.</summary>
    public uint MaxPacketSize { get; set; }

    /// <summary>The socket's send and receive buffer sizes. MQTTnet sets both to its own default of 8 KiB, which fixes
    /// them (no kernel autotuning): a 700 KB publish then took ~300 ms on loopback (issue 17, measured with
    /// bench `proxy`); with 1 MiB (the kernel caps it at net.core.wmem_max/rmem_max) it takes ~5 ms.</summary>
    public int SocketBufferSize { get; set; } = 1 << 20;

    /// <summary>Write a publish's header and each buffer of its payload as they are, instead of copying them into one
    /// buffer first (MQTTnet's packet fragmentation). Off by default: one write per small message. For clients that send
    /// large payloads (the proxy's chunks, issue 17), where the copy costs more than the extra writes.</summary>
    public bool AllowPacketFragmentation { get; set; }

    /// <summary>Last Will: published by the broker when this client disappears without DISCONNECT.</summary>
    public BrokerWill? Will { get; set; }

    /// <summary>Subscriptions made on every connect that finds no session (the first one included).</summary>
    public IList<(string Filter, MqttQualityOfServiceLevel Qos)> Subscriptions { get; } = [];

    /// <summary>
    /// Filters an earlier configuration of this client may have left in its kept session (a persistent session keeps its
    /// subscriptions across restarts, so a changed configuration would otherwise never reach the broker). When set, a
    /// connect that finds the session unsubscribes these and subscribes <see cref="Subscriptions"/> again.
    /// </summary>
    public IList<string> StaleSubscriptions { get; } = [];

    /// <summary>
    /// Called at every connect, before the subscriptions are made or renewed, with whether the broker offers shared
    /// subscriptions (MQTT 5: its CONNACK's Shared Subscription Available, which an absent property means yes; MQTT
    /// 3.1.1 announces nothing: false). It may change <see cref="Subscriptions"/> and <see cref="StaleSubscriptions"/>
    /// (the manager chooses between shared and plain filters here).
    /// </summary>
    public Action<bool>? Subscribing { get; set; }

    /// <summary>
    /// Received messages waiting for the handler. When full, MQTTnet's delivery of the next message waits, but its read
    /// loop does not: it goes on queueing what the broker sends in a queue of its own, without a limit. What bounds that
    /// is the broker's in-flight limit towards this client: with MQTT 5 the connection asks for a Receive Maximum of this
    /// capacity (at most 65535), so at most about twice the capacity of QoS 1/2 messages are held in memory; with MQTT
    /// 3.1.1 the broker's own limit applies (mosquitto: max_inflight_messages, 20 by default). QoS 0 messages are not
    /// bounded by either.
    /// </summary>
    public int ReceiveQueueCapacity { get; set; } = 1024;

    /// <summary>The most received messages one handler call is given.</summary>
    public int MaxBatch { get; set; } = 256;

    /// <summary>
    /// How many received batches <see cref="BrokerConnection.Handler"/> may hold at once (1 by default: the next batch
    /// waits until the handler has returned). Above 1 the next batch is handed over while earlier ones are still being
    /// handled; acknowledgements still go in arrival order, each batch's once its handler has returned. A handler that
    /// needs some messages handled in order must then keep that order across batches itself.
    /// </summary>
    public int MaxBatchesInFlight { get; set; } = 1;

    public TimeSpan ReconnectDelay { get; set; } = TimeSpan.FromMilliseconds(500);

    /// <summary>
    /// Whether a connection that was made and then lost is made again (the default). False for a connection that only
    /// borrows another client's session: when the broker hands that session back to its owner (a connect with the same
    /// client id takes it over), connecting again would take it from the owner in turn. Also a loss after the CONNACK,
    /// while the connect still subscribes or unsubscribes, ends the attempts.
    /// </summary>
    public bool ReconnectAfterLoss { get; set; } = true;

    public TimeSpan MaxReconnectDelay { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// How long a connection must have lasted for its loss to be reconnected at once. Connections that end sooner, one
    /// after another, are made again with the reconnect backoff and logged: that is what two clients with one client id do
    /// to each other (the broker closes the older connection whenever the other connects), and without a pause they took
    /// the id from each other several times a second, each time with a Last Will.
    /// </summary>
    public TimeSpan StableConnection { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>Sets <see cref="Host"/>, <see cref="Port"/> and <see cref="Tls"/> from an address such as
    /// <c>tcp://host:1883</c>, <c>mqtts://host</c> or <c>host:port</c>. Schemes <c>ssl</c>, <c>tls</c>, <c>mqtts</c>,
    /// <c>tcps</c>, <c>mqtt+ssl</c> mean TLS (default port 8883; paho's TLS schemes); other schemes mean plain TCP
    /// (default port 1883), except the transports this client does not speak (<c>ws</c>, <c>wss</c>, <c>unix</c>,
    /// <c>http</c>, <c>https</c>), refused with an <see cref="ArgumentException"/>: taken as plain TCP, a <c>wss://</c>
    /// or <c>tcps://</c> address sent the credentials in clear.</summary>
    public BrokerOptions WithAddress(string address)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(address);
        if (!address.Contains("://", StringComparison.Ordinal))
        {
            address = "tcp://" + address;
        }

        var uri = new Uri(address, UriKind.Absolute);
        if (uri.Scheme is "ws" or "wss" or "unix" or "http" or "https")
        {
            throw new ArgumentException(
                $"{uri.Scheme}:// is not supported: use tcp:// (or mqtt://), or ssl:// (tls://, mqtts://, tcps://, mqtt+ssl://) for TLS", nameof(address));
        }

        // Credentials in the address (tcp://user:pass@host, as paho takes them) when none are set otherwise; they were
        // ignored (and the address, logged as it was, showed the password).
        if (uri.UserInfo is { Length: > 0 } userInfo)
        {
            var colon = userInfo.IndexOf(':', StringComparison.Ordinal);
            Username ??= Uri.UnescapeDataString(colon < 0 ? userInfo : userInfo[..colon]);
            Password ??= colon < 0 ? null : Uri.UnescapeDataString(userInfo[(colon + 1)..]);
        }

        var tls = uri.Scheme is "ssl" or "tls" or "mqtts" or "tcps" or "mqtt+ssl";
        Host = uri.Host.Trim('[', ']');
        Port = uri.IsDefaultPort || uri.Port <= 0 ? (tls ? 8883 : 1883) : uri.Port;
        if (tls)
        {
            Tls ??= new BrokerTls();
        }

        return this;
    }

    /// <summary><paramref name="address"/> without the credentials it may carry (<c>tcp://user:pass@host</c> →
    /// <c>tcp://host</c>), to be logged or shown.</summary>
    public static string Redacted(string address)
    {
        ArgumentNullException.ThrowIfNull(address);
        var start = address.IndexOf("://", StringComparison.Ordinal) is var scheme and >= 0 ? scheme + 3 : 0;
        var end = address.IndexOf('/', start) is var slash and >= 0 ? slash : address.Length;
        var at = address.AsSpan(start, end - start).LastIndexOf('@');
        return at < 0 ? address : string.Concat(address.AsSpan(0, start), address.AsSpan(start + at + 1));
    }

    /// <summary>Reads a protocol version setting: unset, 5, 5.0 (MQTT 5) or 3.1.1, 311, 4 (MQTT 3.1.1).</summary>
    public static bool TryParseProtocolVersion(string? value, out MqttProtocolVersion version)
    {
        version = value?.Trim() switch
        {
            null or "" or "5" or "5.0" => MqttProtocolVersion.V500,
            "3.1.1" or "311" or "4" => MqttProtocolVersion.V311,
            _ => MqttProtocolVersion.Unknown,
        };
        return version != MqttProtocolVersion.Unknown;
    }

    internal void Validate()
    {
        Check(!string.IsNullOrWhiteSpace(Host), "Host is required");
        Check(Port is >= 1 and <= 65535, "Port must be 1..65535");
        Check(MaxInflight is >= 1 and <= 65535, "MaxInflight must be 1..65535");
        Check(MaxBatch >= 1 && ReceiveQueueCapacity >= 1 && MaxBatchesInFlight >= 1, "MaxBatch, ReceiveQueueCapacity and MaxBatchesInFlight must be positive");
        Check(SocketBufferSize >= 4096, "SocketBufferSize must be at least 4096");
        Check(KeepAlive >= TimeSpan.Zero && KeepAlive.TotalSeconds <= ushort.MaxValue, "KeepAlive must be 0..65535 s");
        Check(ConnectTimeout > TimeSpan.Zero && OperationTimeout > TimeSpan.Zero, "timeouts must be positive");
        Check(ReconnectDelay > TimeSpan.Zero && MaxReconnectDelay >= ReconnectDelay, "reconnect delays must be positive and ordered");
        Check(StableConnection > TimeSpan.Zero, "StableConnection must be positive");
        Check(ProtocolVersion != MqttProtocolVersion.V311 || ClientId.Length > 0 || CleanStart, "MQTT 3.1.1 needs a client id for a persistent session");
        Check(Tls is null || (Tls.ClientCertificateFile is null) == (Tls.ClientKeyFile is null), "a TLS client certificate and its key must be given together");
    }

    private static void Check(bool valid, string problem)
    {
        if (!valid)
        {
            throw new InvalidOperationException($"Invalid broker connection settings: {problem}.");
        }
    }
}
