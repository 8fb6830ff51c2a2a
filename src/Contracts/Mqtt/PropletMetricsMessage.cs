using System.Text.Json.Serialization;

namespace Propeller.Contracts.Mqtt;

/// <summary><c>control/proplet/metrics</c> (spec propeller-edge.md §1.6), with the timestamp as an RFC 3339 string
/// (the manager's expectation; the Rust proplet sent an object).</summary>
public sealed record PropletMetricsMessage(
    [property: JsonPropertyName("proplet_id")] string PropletId,
    [property: JsonPropertyName("namespace")] string Namespace,
    [property: JsonPropertyName("timestamp")] string Timestamp,
    [property: JsonPropertyName("cpu_metrics")] CpuMetrics CpuMetrics,
    [property: JsonPropertyName("memory_metrics")] MemoryMetrics MemoryMetrics);
