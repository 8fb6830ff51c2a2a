using System.Text.Json.Serialization;

namespace Propeller.Contracts.Mqtt;

/// <summary>Aggregates over a task's retained samples (<see cref="TaskMetricsMessage"/>); disk totals are last minus first.</summary>
public sealed record AggregatedMetrics(
    [property: JsonPropertyName("avg_cpu_usage")] double AvgCpuUsage,
    [property: JsonPropertyName("max_cpu_usage")] double MaxCpuUsage,
    [property: JsonPropertyName("avg_memory_usage")] ulong AvgMemoryUsage,
    [property: JsonPropertyName("max_memory_usage")] ulong MaxMemoryUsage,
    [property: JsonPropertyName("total_disk_read")] ulong TotalDiskRead,
    [property: JsonPropertyName("total_disk_write")] ulong TotalDiskWrite,
    [property: JsonPropertyName("sample_count")] int SampleCount);
