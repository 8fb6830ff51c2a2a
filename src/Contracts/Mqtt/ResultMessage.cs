using System.Text.Json;
using System.Text.Json.Serialization;

namespace Propeller.Contracts.Mqtt;

/// <summary><c>control/proplet/results</c> (spec propeller-edge.md §1.11): results is any JSON (a string from the Rust proplet).</summary>
public sealed record ResultMessage
{
    [JsonPropertyName("task_id")]
    public string? TaskId { get; init; }

    [JsonPropertyName("proplet_id")]
    public string? PropletId { get; init; }

    [JsonPropertyName("results")]
    public JsonElement? Results { get; init; }

    [JsonPropertyName("error")]
    public JsonElement? Error { get; init; }
}
