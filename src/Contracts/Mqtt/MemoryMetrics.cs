using System.Text.Json.Serialization;

namespace Propeller.Contracts.Mqtt;

/// <summary><c>memory_metrics</c> of <see cref="PropletMetricsMessage"/>. The heap fields are the Go runtime's; the
/// container fields are left out when unknown.</summary>
public sealed record MemoryMetrics
{
    [JsonPropertyName("rss_bytes")]
    public ulong RssBytes { get; init; }

    [JsonPropertyName("heap_alloc_bytes")]
    public ulong HeapAllocBytes { get; init; }

    [JsonPropertyName("heap_sys_bytes")]
    public ulong HeapSysBytes { get; init; }

    [JsonPropertyName("heap_inuse_bytes")]
    public ulong HeapInuseBytes { get; init; }

    [JsonPropertyName("container_usage_bytes"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public ulong? ContainerUsageBytes { get; init; }

    [JsonPropertyName("container_limit_bytes"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public ulong? ContainerLimitBytes { get; init; }
}
