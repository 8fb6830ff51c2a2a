namespace Propeller.Mqtt;

/// <summary>Settings of an <see cref="MqttClient"/>. Defaults follow the original Propeller clients
/// (keep-alive 30 s, in-flight window 10, max packet 10 MiB, reconnect backoff 1 s doubling to 60 s).</summary>
public sealed class MqttClientOptions
{
    public string Host { get; set; } = "localhost";

    public int Port { get; set; } = 1883;

    /// <summary>TLS settings; null means plain TCP.</summary>
    public MqttTlsOptions? Tls { get; set; }

    public MqttProtocolVersion ProtocolVersion { get; set; } = MqttProtocolVersion.V311;

    /// <summary>Client identifier; empty lets an MQTT 5 broker assign one (3.1.1 then needs a clean session).</summary>
    public string ClientId { get; set; } = string.Empty;

    public string? Username { get; set; }

    public string? Password { get; set; }

    /// <summary>Clean start (3.1.1: clean session). False keeps the broker session, so unacknowledged QoS 1/2
    /// messages are retransmitted with DUP after a reconnect.</summary>
    public bool CleanStart { get; set; } = true;

    /// <summary>MQTT 5 session expiry in seconds (0 = the session ends with the connection).</summary>
    public uint SessionExpiryInterval { get; set; }

    public TimeSpan KeepAlive { get; set; } = TimeSpan.FromSeconds(30);

    public TimeSpan ConnectTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Last Will: published by the broker when this client disappears without DISCONNECT.</summary>
    public MqttMessage? Will { get; set; }

    /// <summary>Maximum unacknowledged outgoing QoS 1/2 publishes (lowered to the broker's Receive Maximum).</summary>
    public int MaxInflight { get; set; } = 10;

    /// <summary>Largest packet accepted from the broker (and sent to it), fixed header included.</summary>
    public int MaxPacketSize { get; set; } = 10 * 1024 * 1024;

    /// <summary>MQTT 5 Receive Maximum announced to the broker.</summary>
    public ushort ReceiveMaximum { get; set; } = 100;

    /// <summary>MQTT 5 Topic Alias Maximum announced to the broker (aliases the broker may use when sending).</summary>
    public ushort TopicAliasMaximum { get; set; } = 64;

    /// <summary>Capacity of <see cref="MqttClient.Messages"/>; when full, reading from the socket pauses.</summary>
    public int ReceiveQueueCapacity { get; set; } = 1024;

    /// <summary>Capacity of the outgoing packet queue; when full, publishers wait.</summary>
    public int SendQueueCapacity { get; set; } = 1024;

    public bool AutoReconnect { get; set; } = true;

    public TimeSpan ReconnectDelay { get; set; } = TimeSpan.FromSeconds(1);

    public TimeSpan MaxReconnectDelay { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>When set, received messages go to this handler instead of <see cref="MqttClient.Messages"/>: one at a
    /// time, in order, on a loop of their own (so the handler may publish and wait for acknowledgements), through a
    /// queue of <see cref="ReceiveQueueCapacity"/> (when full, reading from the socket pauses). A QoS 1/2 message is
    /// acknowledged after the handler returned, also when it threw (the exception is logged).</summary>
    public Func<MqttMessage, CancellationToken, ValueTask>? MessageHandler { get; set; }

    /// <summary>Instead of <see cref="MessageHandler"/>: received messages go to this handler in batches of what has
    /// arrived (at most <see cref="MaxHandlerBatch"/>), in order, on a loop of their own; the QoS 1/2 messages of a
    /// batch are acknowledged, in order, after the handler returned (also when it threw). Lets a consumer that stores
    /// messages before acknowledging them store a batch in one write.</summary>
    public Func<IReadOnlyList<MqttMessage>, CancellationToken, ValueTask>? MessageBatchHandler { get; set; }

    /// <summary>The most messages one <see cref="MessageBatchHandler"/> call is given.</summary>
    public int MaxHandlerBatch { get; set; } = 256;

    /// <summary>Called after every successful connect, the first one and each reconnect (argument: whether the broker
    /// kept the session), once subscriptions are renewed. It runs off the connection loop; an exception is logged.
    /// The proplet uses it to announce itself again after a reconnect.</summary>
    public Func<bool, CancellationToken, Task>? Connected { get; set; }

    /// <summary>Sets <see cref="Host"/>, <see cref="Port"/> and <see cref="Tls"/> from an address such as
    /// <c>tcp://host:1883</c>, <c>mqtts://host</c> or <c>host:port</c>. Schemes <c>ssl</c>, <c>tls</c>, <c>mqtts</c>
    /// mean TLS (default port 8883); any other scheme means plain TCP (default port 1883).</summary>
    public MqttClientOptions WithAddress(string address)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(address);
        if (!address.Contains("://", StringComparison.Ordinal))
        {
            address = "tcp://" + address;
        }

        var uri = new Uri(address, UriKind.Absolute);
        var tls = uri.Scheme is "ssl" or "tls" or "mqtts";
        Host = uri.Host.Trim('[', ']');
        Port = uri.IsDefaultPort || uri.Port <= 0 ? (tls ? 8883 : 1883) : uri.Port;
        if (tls)
        {
            Tls ??= new MqttTlsOptions();
        }

        return this;
    }

    internal static void Validate(MqttClientOptions options)
    {
        Check(options, !string.IsNullOrWhiteSpace(options.Host), "Host is required");
        Check(options, options.Port is >= 1 and <= 65535, "Port must be 1..65535");
        Check(options, options.MaxInflight is >= 1 and <= 65535, "MaxInflight must be 1..65535");
        Check(options, options.MaxPacketSize is >= 64 and <= 268_435_460, "MaxPacketSize must be 64..268,435,460");
        Check(options, options.ReceiveQueueCapacity >= 1 && options.SendQueueCapacity >= 1, "queue capacities must be positive");
        Check(options, options.ReceiveMaximum > 0, "ReceiveMaximum must be positive");
        Check(options, options.MessageHandler is null || options.MessageBatchHandler is null, "set MessageHandler or MessageBatchHandler, not both");
        Check(options, options.MaxHandlerBatch >= 1, "MaxHandlerBatch must be positive");
        Check(options, options.KeepAlive >= TimeSpan.Zero && options.KeepAlive.TotalSeconds <= ushort.MaxValue, "KeepAlive must be 0..65535 s");
        Check(options, options.ConnectTimeout > TimeSpan.Zero, "ConnectTimeout must be positive");
        Check(options, options.ReconnectDelay > TimeSpan.Zero && options.MaxReconnectDelay >= options.ReconnectDelay, "reconnect delays must be positive and ordered");
        Check(
            options,
            options.ProtocolVersion == MqttProtocolVersion.V500 || options.ClientId.Length > 0 || options.CleanStart,
            "MQTT 3.1.1 needs a client id for a persistent session");
        Check(
            options,
            options.Tls is null || (options.Tls.ClientCertificateFile is null) == (options.Tls.ClientKeyFile is null),
            "a TLS client certificate and its key must be given together");
        if (options.Will is not null)
        {
            MqttTopic.ValidateTopicName(options.Will.Topic, nameof(options));
        }
    }

    private static void Check(MqttClientOptions options, bool valid, string problem)
    {
        if (!valid)
        {
            throw new ArgumentException($"Invalid MQTT client options: {problem}.", nameof(options));
        }
    }
}
