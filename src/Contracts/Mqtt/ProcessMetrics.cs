using System.Text.Json.Serialization;

namespace Propeller.Contracts.Mqtt;

/// <summary>One sample of <see cref="TaskMetricsMessage"/>: CPU percent (100 = one core), memory in bytes, cumulative disk
/// I/O, seconds since monitoring began, threads and open file descriptors; disabled fields are 0.</summary>
public sealed record ProcessMetrics
{
    [JsonPropertyName("cpu_percent")]
    public double CpuPercent { get; init; }

    [JsonPropertyName("memory_bytes")]
    public ulong MemoryBytes { get; init; }

    [JsonPropertyName("memory_percent")]
    public double MemoryPercent { get; init; }

    [JsonPropertyName("disk_read_bytes")]
    public ulong DiskReadBytes { get; init; }

    [JsonPropertyName("disk_write_bytes")]
    public ulong DiskWriteBytes { get; init; }

    [JsonPropertyName("uptime_seconds")]
    public ulong UptimeSeconds { get; init; }

    [JsonPropertyName("thread_count")]
    public uint ThreadCount { get; init; }

    [JsonPropertyName("file_descriptor_count")]
    public uint FileDescriptorCount { get; init; }
}
