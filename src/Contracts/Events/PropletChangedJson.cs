using System.Text.Json.Serialization;

namespace Propeller.Contracts.Events;

/// <summary>
/// The data of a <c>proplet</c> event on <c>GET /events</c>: a proplet's registration, metadata, online/offline or
/// deletion was committed (heartbeats are not events: read <c>GET /proplets</c> for the last one).
/// </summary>
public sealed record PropletChangedJson(
    [property: JsonPropertyName("id")] string Id,
    [property: JsonPropertyName("version")] long Version,
    [property: JsonPropertyName("name"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Name,
    [property: JsonPropertyName("offline")] bool Offline,
    [property: JsonPropertyName("deleted"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)] bool Deleted);
