using System.Text.Json.Serialization;

namespace Propeller.Contracts.Mqtt;

/// <summary><c>control/manager/stop</c> (spec propeller-edge.md §1.9).</summary>
public sealed record StopMessage(
    [property: JsonPropertyName("id")] string Id,
    [property: JsonPropertyName("broadcast")] bool Broadcast,
    [property: JsonPropertyName("proplet_id"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? PropletId);
