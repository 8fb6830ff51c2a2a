using System.Text.Json.Serialization;
using Propeller.Contracts.Json;

namespace Propeller.Contracts.Proplets;

/// <summary>PropletView on the wire (spec propeller-manager.md §1.4).</summary>
public sealed record PropletJson(
    [property: JsonPropertyName("id")] string Id,
    [property: JsonPropertyName("name")] string Name,
    [property: JsonPropertyName("task_count")] int TaskCount,
    [property: JsonPropertyName("alive")] bool Alive,
    [property: JsonPropertyName("last_alive_at"), JsonConverter(typeof(WireTimeConverter)), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)] DateTimeOffset LastAliveAt,
    [property: JsonPropertyName("metadata")] PropletMetadataJson Metadata);

/// <summary>Proplet metadata on the wire; every key omitted when empty or zero.</summary>
public sealed record PropletMetadataJson
{
    [JsonPropertyName("description"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? Description { get; init; }

    [JsonPropertyName("tags"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyList<string>? Tags { get; init; }

    [JsonPropertyName("location"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? Location { get; init; }

    [JsonPropertyName("ip"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? Ip { get; init; }

    [JsonPropertyName("environment"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? Environment { get; init; }

    [JsonPropertyName("os"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? Os { get; init; }

    [JsonPropertyName("hostname"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? Hostname { get; init; }

    [JsonPropertyName("cpu_arch"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? CpuArch { get; init; }

    [JsonPropertyName("total_memory_bytes"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public ulong TotalMemoryBytes { get; init; }

    [JsonPropertyName("proplet_version"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? PropletVersion { get; init; }

    [JsonPropertyName("wasm_runtime"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? WasmRuntime { get; init; }
}
