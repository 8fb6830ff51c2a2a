using Microsoft.Extensions.Logging;
using MQTTnet.Formatter;
using MQTTnet.Protocol;

namespace Propeller.Edge.Configuration;

/// <summary>
/// The proplet's settings, read by <see cref="PropletSettingsLoader"/> from the original's PROPLET_* variables
/// (spec propeller-edge.md §4.2) plus the limits this implementation adds (docs/edge.md).
/// </summary>
public sealed record PropletSettings
{
    public LogLevel LogLevel { get; init; } = LogLevel.Information;

    /// <summary>One JSON object per log entry (PROPLET_LOG_FORMAT=json, like the original) instead of one text line.</summary>
    public bool JsonLogs { get; init; }

    public string MqttAddress { get; init; } = "tcp://localhost:1883";

    public MqttQualityOfServiceLevel Qos { get; init; } = MqttQualityOfServiceLevel.ExactlyOnce;

    /// <summary>MQTT 5 (default) or 3.1.1 (PROPLET_MQTT_PROTOCOL_VERSION).</summary>
    public MqttProtocolVersion MqttProtocolVersion { get; init; } = MqttProtocolVersion.V500;

    /// <summary>How long a publish waits, for the connection included, before it is retried (PROPLET_MQTT_TIMEOUT;
    /// unused by the original).</summary>
    public TimeSpan MqttTimeout { get; init; } = TimeSpan.FromSeconds(30);

    public TimeSpan KeepAlive { get; init; } = TimeSpan.FromSeconds(30);

    public int MaxPacketSize { get; init; } = 10 * 1024 * 1024;

    public int Inflight { get; init; } = 10;

    public int RequestChannelCapacity { get; init; } = 128;

    public string? TlsCaCert { get; init; }

    public string? TlsClientCert { get; init; }

    public string? TlsClientKey { get; init; }

    public bool TlsInsecureSkipVerify { get; init; }

    /// <summary>False keeps the broker session (PROPLET_MQTT_CLEAN_SESSION=false); the original always used a clean one.</summary>
    public bool CleanSession { get; init; } = true;

    public required string TenantId { get; init; }

    public required string ChannelId { get; init; }

    public required string EntityId { get; init; }

    public required string ApiKey { get; init; }

    public TimeSpan LivelinessInterval { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Zero disables the proplet metrics.</summary>
    public TimeSpan MetricsInterval { get; init; } = TimeSpan.FromSeconds(10);

    public bool EnableMonitoring { get; init; } = true;

    public string Namespace { get; init; } = "default";

    /// <summary>PROPLET_EXTERNAL_WASM_RUNTIME as given (reported in discovery even when it was not found).</summary>
    public string? ExternalWasmRuntime { get; init; }

    public IReadOnlyList<string> Dirs { get; init; } = [];

    public string? Description { get; init; }

    public IReadOnlyList<string> Tags { get; init; } = [];

    public string? Location { get; init; }

    public bool CollectSystemInfo { get; init; } = true;

    /// <summary>Tasks running at once (PROPLET_MAX_CONCURRENT_TASKS); later starts wait for a slot. Daemons do not count.</summary>
    public int MaxConcurrentTasks { get; init; } = Math.Max(2, Environment.ProcessorCount * 2);

    /// <summary>
    /// What the starts waiting for a slot may hold of inline modules at once, in bytes of their base64 text in memory
    /// (PROPLET_MAX_WAITING_BYTES, 256 MiB); a start that would wait beyond it is refused with an error result.
    /// </summary>
    public long MaxWaitingBytes { get; init; } = 256L << 20;

    /// <summary>Default fuel per task (PROPLET_TASK_FUEL); null = unlimited.</summary>
    public long? TaskFuel { get; init; }

    /// <summary>Default linear-memory cap per task in MiB (PROPLET_TASK_MAX_MEMORY_MIB); null = unlimited.</summary>
    public long? TaskMaxMemoryMib { get; init; }

    /// <summary>
    /// PROPLET_HTTP_ENABLED (spec §2.11), default false. Off, an HTTP proxy component gets the original's "HTTP proxy is
    /// disabled" error; on, it is served on its own port (ADR 0015).
    /// </summary>
    public bool HttpEnabled { get; init; }

    /// <summary>PROPLET_HTTP_PROXY_PORT (spec §2.11), default 8222: the first of the 100 ports a proxy without a port in its
    /// cli_args may take.</summary>
    public int HttpProxyPort { get; init; } = 8222;

    /// <summary>
    /// WebAssembly instances alive at once in the process's pooling allocator (PROPLET_WASM_POOL_INSTANCES; ADR 0011):
    /// default max(1000, 2 × PROPLET_MAX_CONCURRENT_TASKS); 0 = Wasmtime's on-demand allocator (no pool).
    /// </summary>
    public int WasmPoolInstances { get; init; } = WasmHost.WasmPool.DefaultInstances;

    /// <summary>Default wall-clock limit per task (PROPLET_TASK_TIMEOUT seconds); null = none. Daemons are exempt.</summary>
    public TimeSpan? TaskTimeout { get; init; }

    /// <summary>Bytes of stdout (and of stderr) kept per task (PROPLET_TASK_OUTPUT_LIMIT, default 1 MiB).</summary>
    public int OutputLimit { get; init; } = 1 << 20;

    /// <summary>Where compiled modules are kept across restarts (PROPLET_WASM_CACHE_DIR); null = in memory only.</summary>
    public string? WasmCacheDir { get; init; }

    /// <summary>How long a registry fetch waits for its chunks (PROPLET_CHUNK_WAIT seconds, default 60).</summary>
    public TimeSpan ChunkWait { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>Age after which a partial or unclaimed chunk assembly is dropped (PROPLET_CHUNK_TTL seconds, default 300).</summary>
    public TimeSpan ChunkTtl { get; init; } = TimeSpan.FromSeconds(300);

    /// <summary>How long a partial assembly may go without a new chunk before the missing ones are asked for again
    /// (PROPLET_CHUNK_STALL seconds, default 2; docs/proxy.md).</summary>
    public TimeSpan ChunkStall { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>Bytes of verified images from the proxy kept by their sha256 (PROPLET_IMAGE_CACHE_BYTES, default 32 MiB; 0:
    /// none): a later delivery of a held digest is served at its first chunk (docs/proxy.md).</summary>
    public long ImageCacheBytes { get; init; } = 32L << 20;

    /// <summary>Largest binary accepted from HTTP or chunks (PROPLET_MAX_BINARY_SIZE bytes, default 100 MiB).</summary>
    public long MaxBinarySize { get; init; } = 100L << 20;

    /// <summary>Extra CA (PEM file) trusted for http(s) image downloads (PROPLET_HTTP_TLS_CA_CERT).</summary>
    public string? HttpTlsCaCert { get; init; }

    /// <summary>Skip certificate checks for image downloads (PROPLET_HTTP_TLS_INSECURE_SKIP_VERIFY).</summary>
    public bool HttpTlsInsecureSkipVerify { get; init; }

    /// <summary>Serve GET /metrics (Prometheus text) and GET /health on <see cref="MetricsPort"/> (PROPLET_METRICS_ENABLED).</summary>
    public bool MetricsEnabled { get; init; } = true;

    public int MetricsPort { get; init; } = 9092;

    /// <summary>PROPLET_PLUGIN_DIR: Wasm plugins consulted for every start (docs/plugins.md); none when unset.</summary>
    public string? PluginDir { get; init; }

    /// <summary>What the loader kept its default for with a warning (a value the original accepted but ignored, such as
    /// PROPLET_METRICS_PORT=0); the proplet logs each as it starts, once logging is set up.</summary>
    public IReadOnlyList<string> Warnings { get; init; } = [];

    public string BaseTopic => Contracts.Mqtt.Topics.Base(TenantId, ChannelId);
}
