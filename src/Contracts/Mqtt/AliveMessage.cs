using System.Text.Json.Serialization;

namespace Propeller.Contracts.Mqtt;

/// <summary><c>control/proplet/alive</c>: a heartbeat, or (status "offline") a Last Will.</summary>
public sealed record AliveMessage(
    [property: JsonPropertyName("proplet_id")] string? PropletId,
    [property: JsonPropertyName("status")] string? Status,
    [property: JsonPropertyName("namespace")] string? Namespace);
