using MQTTnet.Protocol;
using Propeller.Contracts.Mqtt;

namespace Propeller.Proxy.Configuration;

/// <summary>The proxy's settings (PROXY_*, spec propeller-edge.md §3.5, and ours; docs/proxy.md).</summary>
public sealed class ProxySettings
{
    /// <summary>PROXY_CHUNK_SIZE's default (see <see cref="ChunkSize"/>).</summary>
    public const int DefaultChunkSize = 128_000;

    public required string TenantId { get; init; }

    public required string ChannelId { get; init; }

    public required string EntityId { get; init; }

    public required string ApiKey { get; init; }

    public LogLevel LogLevel { get; init; } = LogLevel.Information;

    public string MqttAddress { get; init; } = "tcp://localhost:1883";

    public TimeSpan MqttTimeout { get; init; } = TimeSpan.FromSeconds(30);

    public MqttQualityOfServiceLevel Qos { get; init; } = MqttQualityOfServiceLevel.ExactlyOnce;

    public string? TlsCaCert { get; init; }

    public string? TlsClientCert { get; init; }

    public string? TlsClientKey { get; init; }

    public bool TlsInsecureSkipVerify { get; init; }

    public string HttpHost { get; init; } = "0.0.0.0";

    public int HttpPort { get; init; } = 9191;

    /// <summary>PROXY_CHUNK_SIZE: 128000 bytes (the original: 512000). Chosen by measurement (bench `proxy`, docs/performance.md):
    /// smaller packets cost the proxy, the broker and the proplet less CPU per byte and let the broker forward one chunk while
    /// the next arrives; any size up to the proplets' MQTT packet limit (10 MiB) is understood by old proplets.</summary>
    public int ChunkSize { get; init; } = DefaultChunkSize;

    /// <summary>PROXY_BINARY_CHUNKS (true): a request whose <c>formats</c> names <c>binary</c> (our proplets) gets raw-bytes
    /// chunks on <c>registry/chunk</c>; false: base64 JSON on <c>registry/server</c> for every request (docs/proxy.md).</summary>
    public bool BinaryChunks { get; init; } = true;

    /// <summary>PROXY_AUTHENTICATE: send the static credentials to <see cref="RegistryHost"/>.</summary>
    public bool Authenticate { get; init; }

    public string? RegistryToken { get; init; }

    public string? RegistryUsername { get; init; }

    public string? RegistryPassword { get; init; }

    /// <summary>The registry host (host[:port]) the static credentials are for (from PROXY_REGISTRY_URL).</summary>
    public string? RegistryHost { get; init; }

    /// <summary>Registries spoken to over plain HTTP (PROXY_PLAIN_HTTP): loopback hosts by default.</summary>
    public PlainHttpPolicy PlainHttp { get; init; } = PlainHttpPolicy.LoopbackOnly;

    public long MaxArtifactBytes { get; init; } = 100L << 20;

    public long CacheBytes { get; init; } = 256L << 20;

    public int MaxConcurrentFetches { get; init; } = 50;

    public TimeSpan RegistryTimeout { get; init; } = TimeSpan.FromMinutes(2);

    public string BaseTopic => Topics.Base(TenantId, ChannelId);
}
