using System.Text.Json;
using System.Text.Json.Serialization;
using Propeller.Contracts.Json;

namespace Propeller.Contracts.Tasks;

/// <summary>One event of GET /tasks/{id}/history (beyond the original): the stored event and its metadata.</summary>
public sealed record TaskHistoryEntryJson(
    [property: JsonPropertyName("version")] long Version,
    [property: JsonPropertyName("type")] string Type,
    [property: JsonPropertyName("timestamp"), JsonConverter(typeof(WireTimeConverter))] DateTimeOffset Timestamp,
    [property: JsonPropertyName("data")] JsonElement Data,
    [property: JsonPropertyName("correlation_id")] string? CorrelationId,
    [property: JsonPropertyName("causation_id")] string? CausationId,
    [property: JsonPropertyName("user_id")] string? UserId,
    [property: JsonPropertyName("headers")] IReadOnlyDictionary<string, string>? Headers);
