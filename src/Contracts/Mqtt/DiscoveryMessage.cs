using System.Text.Json;
using System.Text.Json.Serialization;

namespace Propeller.Contracts.Mqtt;

/// <summary>
/// <c>control/proplet/create</c> (spec propeller-manager.md §6.2). Metadata values are read leniently (strings,
/// string arrays, an unsigned integer for total_memory_bytes), so it stays a JSON element here.
/// </summary>
public sealed record DiscoveryMessage
{
    [JsonPropertyName("proplet_id")]
    public string? PropletId { get; init; }

    [JsonPropertyName("namespace")]
    public string? Namespace { get; init; }

    [JsonPropertyName("metadata")]
    public JsonElement? Metadata { get; init; }

    /// <summary>
    /// Our extension (docs/compatibility.md): the tasks the proplet holds now, as <see cref="HeldTask"/> items. Our
    /// manager sends again the start of a task it has running there that is not among them, and the stop of one it has
    /// stopped or given up; without the field (the original proplet) it does neither. Read leniently by the manager.
    /// </summary>
    [JsonPropertyName("tasks"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public JsonElement? Tasks { get; init; }
}
