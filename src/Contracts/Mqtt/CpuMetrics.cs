using System.Text.Json.Serialization;

namespace Propeller.Contracts.Mqtt;

/// <summary><c>cpu_metrics</c> of <see cref="PropletMetricsMessage"/>: process CPU time and system-wide usage (0–100).</summary>
public sealed record CpuMetrics(
    [property: JsonPropertyName("user_seconds")] double UserSeconds,
    [property: JsonPropertyName("system_seconds")] double SystemSeconds,
    [property: JsonPropertyName("percent")] double Percent);
