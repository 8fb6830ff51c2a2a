using System.Text.Json.Serialization;

namespace Propeller.Contracts.Tasks;

/// <summary>GET /tasks: <c>{offset, limit, total, tasks}</c>.</summary>
public sealed record TaskPage(
    [property: JsonPropertyName("offset")] long Offset,
    [property: JsonPropertyName("limit")] long Limit,
    [property: JsonPropertyName("total")] long Total,
    [property: JsonPropertyName("tasks")] IReadOnlyList<TaskJson> Tasks);
