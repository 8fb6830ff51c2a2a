using System.Text.Json.Serialization;

namespace Propeller.Contracts.Mqtt;

/// <summary><c>control/proplet/task_metrics</c> (spec propeller-edge.md §1.7); <c>aggregated</c> is null without history.</summary>
public sealed record TaskMetricsMessage(
    [property: JsonPropertyName("task_id")] string TaskId,
    [property: JsonPropertyName("proplet_id")] string PropletId,
    [property: JsonPropertyName("metrics")] ProcessMetrics Metrics,
    [property: JsonPropertyName("aggregated")] AggregatedMetrics? Aggregated,
    [property: JsonPropertyName("timestamp")] string Timestamp);
