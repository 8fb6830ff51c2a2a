using System.Text.Json;
using System.Text.Json.Serialization;

namespace Propeller.Contracts.Mqtt;

/// <summary><c>control/proplet/task_metrics</c> as the manager reads it (spec propeller-edge.md §1.7), leniently: any JSON
/// values, checked by the reader (the proplet writes <see cref="TaskMetricsMessage"/>). <c>timestamp</c> is an RFC 3339 string
/// or, from the Rust proplet, an object (then the receipt time is used).</summary>
public sealed record InboundTaskMetrics
{
    [JsonPropertyName("task_id")]
    public string? TaskId { get; init; }

    [JsonPropertyName("proplet_id")]
    public JsonElement? PropletId { get; init; }

    [JsonPropertyName("timestamp")]
    public JsonElement? Timestamp { get; init; }

    [JsonPropertyName("metrics")]
    public JsonElement? Metrics { get; init; }

    [JsonPropertyName("aggregated")]
    public JsonElement? Aggregated { get; init; }
}

/// <summary><c>control/proplet/metrics</c> as the manager reads it (spec propeller-edge.md §1.6), leniently (the proplet writes <see cref="PropletMetricsMessage"/>).</summary>
public sealed record InboundPropletMetrics
{
    [JsonPropertyName("proplet_id")]
    public string? PropletId { get; init; }

    [JsonPropertyName("namespace")]
    public string? Namespace { get; init; }

    [JsonPropertyName("timestamp")]
    public JsonElement? Timestamp { get; init; }

    [JsonPropertyName("cpu_metrics")]
    public JsonElement? CpuMetrics { get; init; }

    [JsonPropertyName("memory_metrics")]
    public JsonElement? MemoryMetrics { get; init; }
}
