using System.Text.Json.Serialization;

namespace Propeller.Contracts.Mqtt;

/// <summary>The <c>metadata</c> object a proplet sends in <see cref="DiscoveryMessage"/> (spec propeller-edge.md §1.3);
/// optional strings are left out when absent.</summary>
public sealed record DiscoveryMetadata
{
    [JsonPropertyName("description"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? Description { get; init; }

    [JsonPropertyName("tags"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyList<string>? Tags { get; init; }

    [JsonPropertyName("location"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? Location { get; init; }

    [JsonPropertyName("ip"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? Ip { get; init; }

    [JsonPropertyName("environment")]
    public string Environment { get; init; } = "";

    [JsonPropertyName("os")]
    public string Os { get; init; } = "";

    [JsonPropertyName("hostname"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? Hostname { get; init; }

    [JsonPropertyName("cpu_arch")]
    public string CpuArch { get; init; } = "";

    [JsonPropertyName("total_memory_bytes")]
    public ulong TotalMemoryBytes { get; init; }

    [JsonPropertyName("proplet_version")]
    public string PropletVersion { get; init; } = "";

    [JsonPropertyName("wasm_runtime")]
    public string WasmRuntime { get; init; } = "";
}
