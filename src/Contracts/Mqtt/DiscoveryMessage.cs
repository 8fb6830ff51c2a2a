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

    /// <summary>
    /// Our extension, on the discovery a proplet publishes as it connects (absent on the others): whether the broker kept
    /// its session. False: nothing published to it before this connection is on its way (the broker dropped it), so our
    /// manager sends again at once the start of a task it dispatched there before the proplet went away and that the
    /// report lacks, instead of waiting a few seconds for one that may be in flight.
    /// </summary>
    [JsonPropertyName("session_present"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public bool? SessionPresent { get; init; }
}
